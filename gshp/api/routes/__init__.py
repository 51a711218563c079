"""The API's routers, one per concept; `gshp.api.app.create_app` includes them all."""
