"""Identity-drift audit: do face restorers change who you are, and unevenly across groups?

Modules:
    (face embedders live in deblur.embed, shared with the playground and evaluation)
    groups: how subsets are formed, always saying whether a group is a ``label`` or a ``prediction``.
    metrics: per-group statistics (bootstrap CIs, Wilson intervals, disparity, multiple-comparison control).
    engine: the pure per-image step :func:`audit.engine.audit_image` and the driver :func:`audit.engine.run_audit`.
    report: tidy CSVs, plotly figures and contact sheets.

Nothing heavy is imported here; import the submodules you need.
"""
