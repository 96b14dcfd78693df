"""The Gradio app around the sdviz core: layout, handlers, HTML panels, settings."""
