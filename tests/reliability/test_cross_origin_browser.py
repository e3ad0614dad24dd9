"""A page from another origin, open in the victim's own Chromium, tries to drive the signed-in app.

Two attackers, each a tiny http.server on its own port:
- "another port": http://127.0.0.1:<evil>/ against the app at http://127.0.0.1:<app>/. The two are
  the same *site*, so SameSite=Strict does not hold the victim's cookie back, and Gradio's own CORS
  rules accept any loopback origin on a loopback host: the edge's Origin check is all that stands
  in between. This is the laptop case: any local dev server, or a page a local tool serves.
- "another site": http://evil.test:<evil>/ against http://app.test:<app>/ (names mapped to
  127.0.0.1 with Chromium's --host-resolver-rules; app.test is in the app's allowed_hosts). The Host
  is not loopback, so Gradio alone would echo any Origin with credentials; the cookie stays home
  (SameSite=Strict) and the edge refuses.
- DNS rebinding: http://rebound.test:<app>/, a name the attacker points at 127.0.0.1 after its page
  loaded, so the page is same-origin with what it reaches. Only the Host header tells (issue 21, C).

The attacker knows the app (its event indices are the same on every install) but not the victim's
page. It tries fetch() with credentials, no-cors fetches that need no preflight, a text/plain form
that posts JSON, and an iframe. The victim's side must show no change at all, and the attacker must
have read nothing. tests/reliability/test_edge.py checks the same refusals header by header with
httpx; here a real browser decides what is sent and what a page may read.
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass

import pytest

from e2e.conftest import free_port
from e2e.test_browser import expect_balance, sign_up
from tests.browser_fixtures import CHROMIUM, CHROMIUM_ARGS

from .conftest import query, snapshot, start_app
from .gradio_http import endpoint_index, fetch_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOST_RULES = "--host-resolver-rules=MAP evil.test 127.0.0.1, MAP app.test 127.0.0.1, MAP rebound.test 127.0.0.1"

# Every way a page elsewhere can send a request, run in the attacker's page. Each attempt reports
# what the page could see: "read <status> <body>" would be a leak; "blocked" (fetch threw: no CORS
# permission) and "opaque" (a no-cors answer, status and body hidden) are what a browser allows.
ATTACK_JS = """
async ({app, topUp, history}) => {
  const attempts = [];
  async function attempt(name, url, init) {
    try {
      const response = await fetch(url, {credentials: 'include', ...init});
      if (response.type === 'opaque') { attempts.push([name, 'opaque']); return; }
      attempts.push([name, 'read ' + response.status + ' ' + (await response.text()).slice(0, 200)]);
    } catch (error) {
      attempts.push([name, 'blocked ' + error.name]);
    }
  }
  const json = {'content-type': 'application/json'};
  const event = (fn_index, data) => JSON.stringify(
    {data, fn_index, session_hash: 'evil' + Math.random().toString(36).slice(2), event_data: null, trigger_id: null});
  const account = JSON.stringify({username: 'csrf_fetch', password: 'long enough pw'});
  await attempt('queue/join top_up', app + 'gradio_api/queue/join', {method: 'POST', headers: json, body: event(topUp, [500])});
  await attempt('run/predict top_up', app + 'gradio_api/run/predict', {method: 'POST', headers: json, body: event(topUp, [500])});
  await attempt('run/predict history', app + 'gradio_api/run/predict', {method: 'POST', headers: json, body: event(history, [1])});
  await attempt('queue/data', app + 'gradio_api/queue/data?session_hash=evil', {});
  await attempt('register (cors)', app + 'auth/register', {method: 'POST', headers: json, body: account});
  await attempt('register (no-cors)', app + 'auth/register', {method: 'POST', mode: 'no-cors', headers: {'content-type': 'text/plain'}, body: account});
  await attempt('queue/join (no-cors)', app + 'gradio_api/queue/join', {method: 'POST', mode: 'no-cors', headers: {'content-type': 'text/plain'}, body: event(topUp, [500])});
  await attempt('logout (no-cors)', app + 'auth/logout', {method: 'POST', mode: 'no-cors'});
  await attempt('logout-all (no-cors)', app + 'auth/logout-all', {method: 'POST', mode: 'no-cors'});
  await attempt('read the page', app, {});
  await attempt('read config', app + 'config', {});
  return attempts;
}
"""

# Forms post without any preflight; a text/plain form whose one field is named `{"username":...,"x":"`
# and valued `"}` sends a body that parses as JSON: the classic way to post JSON across origins.
FORMS_HTML = """<!doctype html><title>evil</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="register" method="post" enctype="text/plain" target="sink1" action="{app}auth/register">
  <input name='{{"username":"csrf_form","password":"long enough pw","x":"' value='"}}'></form>
<form id="logout" method="post" target="sink2" action="{app}auth/logout"></form>
<form id="logout_all" method="post" target="sink3" action="{app}auth/logout-all"></form>
"""

FRAME_HTML = """<!doctype html><title>evil</title><iframe id="app" src="{app}" width="800" height="600"></iframe>"""


class EvilSite:
    """The attacker's web server: one page per path, set by the test."""

    def __init__(self):
        self.pages: dict[str, str] = {"/": "<!doctype html><title>evil</title>"}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path.split("?")[0], "not here").encode()
                self.send_response(200 if self.path.split("?")[0] in pages else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Setting:
    name: str
    app_host: str
    evil_host: str
    same_site: bool  # whether SameSite=Strict lets the cookie travel with the attacker's requests


SETTINGS = [
    Setting("another port", "127.0.0.1", "127.0.0.1", same_site=True),
    Setting("another site", "app.test", "evil.test", same_site=False),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = start_app(tmp_path_factory.mktemp("cross-origin"), GEMMA_CHAT_ALLOWED_HOSTS="app.test")  # a LAN name
    yield running
    running.stop()


@pytest.fixture(scope="module")
def evil():
    site = EvilSite()
    yield site
    site.close()


@pytest.fixture(scope="module")
def mapped_browser(browser):
    """A second Chromium from the session's Playwright, with evil.test and app.test mapped to 127.0.0.1."""
    launched = browser.browser_type.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, HOST_RULES])
    yield launched
    launched.close()


def sessions_of(app, username: str) -> list[tuple]:
    return query(
        app.data_dir,
        "SELECT s.id, s.revoked_at, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = ?",
        (username,),
    )


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_a_page_from_another_origin_cannot_drive_or_read_the_signed_in_app(app, evil, mapped_browser, setting):
    app_url = f"http://{setting.app_host}:{app.port}/"
    evil_url = f"http://{setting.evil_host}:{evil.port}/"
    victim_name = "victim_" + setting.name.split()[1]
    context = mapped_browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    try:
        victim = context.new_page()
        sign_up(victim, app_url, victim_name)
        expect_balance(victim, 10)
        cookie = next(c for c in context.cookies() if c["name"] == "gemma_session")
        assert cookie["sameSite"] == "Strict" and cookie["httpOnly"]
        before = snapshot(app.data_dir)
        sessions_before = sessions_of(app, victim_name)
        assert [row[1] for row in sessions_before] == [None]  # one live session

        config = fetch_config(app.url)
        evil.pages["/forms"] = FORMS_HTML.format(app=app_url)
        evil.pages["/frame"] = FRAME_HTML.format(app=app_url)
        seen = []  # every answer the app gave the attacker's page, as the browser saw it
        attacker = context.new_page()
        attacker.on("response", lambda response: seen.append(response) if response.url.startswith(app_url) else None)

        attacker.goto(evil_url)
        attempts = attacker.evaluate(
            ATTACK_JS,
            {"app": app_url, "topUp": endpoint_index(config, "top_up"), "history": endpoint_index(config, "history")},
        )
        assert len(attempts) == 11
        leaks = [(name, outcome) for name, outcome in attempts if not outcome.startswith(("blocked", "opaque"))]
        assert leaks == [], leaks  # no answer was readable

        attacker.goto(evil_url + "forms")
        for form in ("register", "logout", "logout_all"):
            with attacker.expect_response(lambda r, form=form: r.url.startswith(app_url + "auth/") and r.request.method == "POST"):
                attacker.evaluate(f"document.getElementById('{form}').submit()")

        attacker.goto(evil_url + "frame")
        attacker.wait_for_timeout(1000)  # the frame's answer has arrived and been judged
        framed = [frame for frame in attacker.frames if frame != attacker.main_frame]
        assert len(framed) == 1
        assert framed[0].locator("#balance, #login-message, input").count() == 0  # the app was not rendered
        assert framed[0].title() != "gemma-chat"

        # What the browser saw: every POST that left the attacker's page (the no-cors fetches and the
        # forms; the others died at their refused preflight) was refused by the edge, and no answer
        # granted CORS.
        unsafe = [r for r in seen if r.request.method not in ("GET", "HEAD")]
        assert len(unsafe) == 7, [(r.request.method, r.url) for r in seen]
        assert {r.status for r in unsafe} == {403}, [(r.request.method, r.url, r.status) for r in unsafe]
        assert not [r.url for r in seen if "access-control-allow-origin" in r.all_headers()]
        framed_page = [r for r in seen if r.request.method == "GET" and r.url == app_url]
        assert len(framed_page) == 1 and framed_page[0].all_headers()["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in framed_page[0].all_headers()["content-security-policy"]
        carried_cookie = [r for r in unsafe if "gemma_session=" in r.request.all_headers().get("cookie", "")]
        if setting.same_site:
            # SameSite=Strict let the cookie go: the edge's Origin check is what refused these.
            assert len(carried_cookie) >= 3, "the forms should carry the cookie same-site"
        else:
            assert carried_cookie == []  # SameSite=Strict kept it home; the edge refused anyway

        # The victim's side: nothing changed, no account made, still signed in.
        assert snapshot(app.data_dir) == before
        assert sessions_of(app, victim_name) == sessions_before
        assert not query(app.data_dir, "SELECT 1 FROM users WHERE username LIKE 'csrf%'")
        victim.reload()
        expect_balance(victim, 10)

        # The same requests from the app's own page are honoured: refusals were about the origin.
        assert victim.evaluate("async () => (await (await fetch('config', {credentials: 'include'})).json()).title") == "gemma-chat"
        assert victim.evaluate("async () => (await fetch('/auth/logout', {method: 'POST'})).status") == 200
        assert [row[1] is not None for row in sessions_of(app, victim_name)] == [True]
    finally:
        context.close()



REBOUND_JS = """
async () => {
  const json = {'content-type': 'application/json'};
  const account = (name) => JSON.stringify({username: name, password: 'long enough pw'});
  const seen = [];
  for (const [method, path, body] of [['GET', '/config'], ['GET', '/'], ['POST', '/auth/register', account('rebound_user')],
                                     ['POST', '/auth/login', account('admin_victim')], ['POST', '/auth/login', account('admin_victim')]]) {
    const response = await fetch(path, {method, headers: json, body, credentials: 'include'});
    seen.push([path, response.status, (await response.text()).slice(0, 200)]);
  }
  return seen;
}
"""


def test_a_rebound_name_reaches_nothing(app, mapped_browser):
    """Finding C: a page on attacker.example resolving to 127.0.0.1 read /config, registered and
    signed in, and locked the admin out of 127.0.0.1 with wrong passwords. Its requests are
    same-origin (Origin matches Host), so only the Host allow-list stops them."""
    context = mapped_browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        before = snapshot(app.data_dir)
        first = page.goto(f"http://rebound.test:{app.port}/")
        assert first.status == 400  # the app's page is not served under the attacker's name
        seen = page.evaluate(REBOUND_JS)  # the attacker's script, same-origin with the app after the rebinding
        assert [status for _, status, _ in seen] == [400] * 5, seen
        assert not [text for _, _, text in seen if "gemma" in text.lower() or "dependencies" in text]
        assert snapshot(app.data_dir) == before
        assert not query(app.data_dir, "SELECT 1 FROM users WHERE username = 'rebound_user'")
        assert not query(app.data_dir, "SELECT 1 FROM login_throttles WHERE username_key = 'admin_victim'")
    finally:
        context.close()
