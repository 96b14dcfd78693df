"""The Gradio app around the sdviz core: the page (layout), one module per part of it with its layout and
handlers (tabs), over a gradio-free session service (session); the API, HTML panels, settings, model threads."""
