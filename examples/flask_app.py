"""A Flask app with productos: request context, flags in views, unhandled errors captured.

Local (no account):  productos devserver   # in another terminal, listens on 127.0.0.1:8010
    pip install 'productos[flask]'
    export PRODUCTOS_API_KEY=phc_dev PRODUCTOS_HOST=http://127.0.0.1:8010
    flask --app examples/flask_app run
Real project: set PRODUCTOS_API_KEY=phc_... and PRODUCTOS_HOST=https://us.i.posthog.com instead.
Try:  curl -H 'X-POSTHOG-DISTINCT-ID: user-1' localhost:5000/   and   curl localhost:5000/boom
"""

from __future__ import annotations

import os

from flask import Flask, jsonify

from productos.integrations.flask import Productos, productos_request


def create_app() -> Flask:
    """Build the app; productos reads its PRODUCTOS_* config keys in init_app."""
    app = Flask(__name__)
    app.config.update(
        PRODUCTOS_API_KEY=os.environ.get("PRODUCTOS_API_KEY"),
        PRODUCTOS_HOST=os.environ.get("PRODUCTOS_HOST"),
        PRODUCTOS_OPTIONS={"flush_interval": 0.5},
        PRODUCTOS_EXTRA_PROPERTIES=lambda request: {"app": "flask-example"},
    )
    Productos().init_app(app)

    @app.get("/")
    def index():  # events here carry $current_url, $request_route, the caller's id ...
        productos_request.capture("home viewed")
        new_home = productos_request.feature_enabled("new-home")
        return jsonify(user=productos_request.distinct_id, new_home=new_home)

    @app.get("/items/<int:item_id>")
    def item(item_id: int):
        productos_request.capture("item viewed", properties={"item_id": item_id})
        return jsonify(item=item_id)

    @app.get("/boom")
    def boom():  # captured as $exception, then Flask answers 500 as usual
        raise RuntimeError("something broke")

    return app


app = create_app()

if __name__ == "__main__":
    app.run(port=5000)
