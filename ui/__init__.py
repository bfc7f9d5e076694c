"""The Gradio user interface: the only package that imports gradio."""
