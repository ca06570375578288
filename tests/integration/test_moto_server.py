"""local mode's moto server as ``local.moto.server`` starts it."""

import requests


def s3_answer_to_a_browser(endpoint: str) -> requests.Response:
    """ListBuckets as a page in a browser would ask it (an Origin header)."""
    return requests.get(f"{endpoint}/", headers={"Origin": "http://localhost:8000", "Host": "s3.amazonaws.com"}, timeout=10)


def test_local_modes_moto_server_answers_no_browser(moto_server, monkeypatch):
    """No CORS headers (Flask-CORS on each of moto's service apps, a twentieth of the server's CPU
    per request): nothing of local mode reads from moto's server in a browser."""
    answer = s3_answer_to_a_browser(moto_server["AWS_ENDPOINT_URL"])
    assert answer.status_code == 200, answer.text
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_moto_still_answers_a_browser_with_cors_unless_told_not_to(monkeypatch):
    """When this fails, moto's server no longer adds CORS headers by default: local mode's
    ``server.start`` need not turn them off."""
    from moto.moto_server import werkzeug_app
    from moto.server import ThreadedMotoServer

    from miniwdl_fargate.local.moto import server as local_moto_server

    monkeypatch.setattr(werkzeug_app, "DISABLE_GLOBAL_CORS", False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        answer = s3_answer_to_a_browser(f"http://{host}:{port}")
        assert answer.status_code == 200, answer.text
        assert answer.headers.get("Access-Control-Allow-Origin") == "http://localhost:8000"
    finally:
        local_moto_server.stop(server)
