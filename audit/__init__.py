"""Identity-drift audit: do face restorers change who you are, and unevenly across groups?

Modules:
    (face embedders live in deblur.embed, shared with the playground and evaluation)
    groups: how subsets are formed, always saying whether a group is a ``label`` or a ``prediction``.
    config: AuditConfig, defaults and the per_image.csv columns.
    data: the data sets the audit reads (one public way to read them).
    stats: per-group statistics on scipy.stats and statsmodels (bootstrap CIs, Wilson intervals, permutation
        tests, Holm), disparity against a reference group.
    engine: the pure per-image step :func:`audit.engine.audit_image` and the driver :func:`audit.engine.run_audit`.
    report: tidy CSVs, plotly figures and contact sheets.
    safety: "Is this blur safe?" (obscure, gallery, sweep, figures, dataset mode, CLI).

Nothing heavy is imported here; import the submodules you need.
"""
