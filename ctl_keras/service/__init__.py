"""The look as an online service: `ctl serve --index=STEM --port=P`.

__main__ (flags, uvicorn) -> app (Starlette routes, bounds, errors) -> batcher (micro-batching into
one scene-tower call) -> generation (the loaded index + tower, watched and swapped atomically) ->
tower (SavedModel in process or TF Serving) and catalog (the only module calling ctl_keras.retrieval).
"""
