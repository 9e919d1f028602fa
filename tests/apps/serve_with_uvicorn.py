"""``python serve_with_uvicorn.py``: an app that starts its server itself."""

import os

import uvicorn
from asgi_plain import app

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
