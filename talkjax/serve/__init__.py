"""`talkjax serve`: an HTTP service and a web page over the sampling pipeline.

jobs.py (the bounded queue and the batching worker), app.py (the HTTP API), server.py
(uvicorn), page.html (the page), bench.py (`talkjax bench serve`). See README.md here.
"""
