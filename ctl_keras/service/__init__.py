"""The look as an online service: `ctl serve --index=STEM --port=P`.

__main__ (flags, uvicorn) -> app (Starlette routes, bounds, errors) -> batcher (micro-batching into
one scene-tower call) -> generation (the loaded index + tower, watched and swapped atomically) ->
tower (retrieval's SceneTower in process, or TF Serving); the search is retrieval's backend (search.py).
"""
