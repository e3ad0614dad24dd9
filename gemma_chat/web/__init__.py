"""The web layer: one FastAPI app with the Gradio UI mounted in it, the /auth routes and the edge."""
