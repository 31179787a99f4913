"""What every node's web UI shares: templates, static files, login, sessions, CSRF, headers.

:class:`WebUI` builds a small FastAPI application that a node mounts at ``/ui``
next to its JSON API (:func:`mount`); the pages of each role add their routes
to it. Pages are rendered on the server with Jinja2 (autoescaped); the only
scripts are our own (``static/app.js``), served from the node itself, and the
Content-Security-Policy allows nothing else — no inline script, no other origin.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL, FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from deltaml.services.ui import format as fmt
from deltaml.services.ui.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    LoginConfig,
    Session,
    same_token,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
UI_PREFIX = "/ui"
#: The UI's routes are named ``ui:<name>`` in the node's app: its API has names of its own.
MOUNT_NAME = "ui"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class LoginRequired(Exception):
    """Raised by :meth:`WebUI.session` when the request has no live session."""


@dataclass
class NavItem:
    label: str
    route: str


@pass_context
def _url_for(context: dict[str, Any], name: str, /, **path_params: Any) -> URL:
    """``url_for`` in the templates: a route of this UI (not of the node's API beside it)."""
    request: Request = context["request"]
    return request.url_for(f"{MOUNT_NAME}:{name}", **path_params)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.globals["url_for"] = _url_for
    env.filters["eth"] = fmt.eth
    env.filters["short"] = fmt.short_address
    env.filters["metric"] = fmt.metric
    env.filters["pct"] = fmt.pct
    env.filters["when"] = fmt.when
    env.filters["status_word"] = fmt.status_word
    env.filters["size"] = fmt.size
    env.filters["duration"] = fmt.duration
    env.filters["clock"] = fmt.clock
    env.globals["status_class"] = lambda status: "status-" + str(status or "").lower()
    env.globals["payment_rule"] = fmt.payment_rule
    return templates


class WebUI:
    """One node's web UI: ``app`` is mounted at ``/ui``; ``login`` None means public pages.

    Parameters
    ----------
    role:
        ``"owner"``, ``"buyer"`` or ``"aggregator"``: picks the templates' title and nav.
    node_address:
        The node's Ethereum address, shown in the header; its first bytes also name the
        session cookie, so that several nodes on one host (ports share cookies) each
        keep their own login.
    """

    def __init__(
        self,
        role: str,
        title: str,
        node_address: str,
        nav: list[NavItem],
        login: LoginConfig | None,
    ) -> None:
        self.role = role
        self.title = title
        self.node_address = node_address
        self.nav = nav
        self.login = login
        suffix = node_address[2:10].lower() if node_address.startswith("0x") else "node"
        self.session_cookie = f"{SESSION_COOKIE}_{suffix}"
        self.login_cookie = f"{LOGIN_COOKIE}_{suffix}"
        self.templates = _templates()
        self._stashed: dict[tuple[str, str], Any] = {}
        self.app = FastAPI(
            title=f"DeltaML {role} web UI",
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
        )
        self.app.state.ui = self
        self.app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
        self._install_handlers()
        if login is not None:
            self._install_login_routes()

    def serve(self, router: APIRouter, node: Any) -> WebUI:
        """Add a role's pages (``router``) that show ``node`` (their :func:`page_node`)."""
        self.app.state.node = node
        self.app.include_router(router)
        return self

    # -- sessions -----------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        """The request's live session; raises :class:`LoginRequired` if the UI needs one."""
        if self.login is None:
            return None
        session = self.login.sessions.get(request.cookies.get(self.session_cookie))
        if session is None:
            raise LoginRequired()
        return session

    def flash(self, session: Session | None, kind: str, text: str) -> None:
        """A message for the next page this session sees (after a redirect)."""
        if session is not None:
            session.flashes.append((kind, text))

    def stash(self, session: Session, key: str, value: Any) -> None:
        """Keep ``value`` for this session's next page (a form after a redirect)."""
        self._stashed[(session.csrf_token, key)] = value
        while len(self._stashed) > 1000:  # the oldest go first
            self._stashed.pop(next(iter(self._stashed)))

    def unstash(self, session: Session | None, key: str) -> Any:
        if session is None:
            return None
        return self._stashed.pop((session.csrf_token, key), None)

    @staticmethod
    def _take_flashes(session: Session | None) -> list[tuple[str, str]]:
        if session is None:
            return []
        flashes, session.flashes = session.flashes, []
        return flashes

    async def form(self, request: Request, session: Session | None, **limits: Any) -> FormData:
        """The posted form, once its CSRF token matches the session's (403 otherwise)."""
        form = await request.form(**limits)
        if session is not None and not same_token(
            str(form.get("csrf_token") or ""), session.csrf_token
        ):
            raise HTTPException(
                403, "This form has expired or did not come from this page. Reload and try again."
            )
        return form

    # -- rendering ----------------------------------------------------------------------
    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        session: Session | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        page = {
            "ui": self,
            "role": self.role,
            "title": self.title,
            "node_address": self.node_address,
            "nav": self.nav,
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            "logged_in": session is not None,
            "needs_login": self.login is not None,
            "flashes": self._take_flashes(session),
            "path": request.url.path,
            **(context or {}),
        }
        return self.templates.TemplateResponse(
            request, template, page, status_code=status_code, headers={"Cache-Control": "no-store"}
        )

    @staticmethod
    def url_for(request: Request, route: str, **params: Any) -> URL:
        """The URL of this UI's route ``route``."""
        return request.url_for(f"{MOUNT_NAME}:{route}", **params)

    def redirect(self, request: Request, route: str, **params: Any) -> RedirectResponse:
        return RedirectResponse(str(self.url_for(request, route, **params)), status_code=303)

    # -- error pages, headers -----------------------------------------------------------
    def _install_handlers(self) -> None:
        app = self.app

        @app.middleware("http")
        async def _headers(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        @app.exception_handler(LoginRequired)
        async def _login_required(request: Request, _exc: LoginRequired) -> Response:
            if "/api/" in request.url.path:
                return JSONResponse({"detail": "log in first"}, status_code=401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            login = self.url_for(request, "login_page")
            return RedirectResponse(f"{login}?next={quote(target, safe='')}", status_code=303)

        # Starlette's own 404 (no such path) and 405 are not FastAPI's HTTPException.
        @app.exception_handler(StarletteHTTPException)
        async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
            if "/api/" in request.url.path:
                return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
            session = None
            if self.login is not None:
                session = self.login.sessions.get(request.cookies.get(self.session_cookie))
            return self.render(
                request,
                "error.html",
                {"status": exc.status_code, "message": str(exc.detail)},
                session=session,
                status_code=exc.status_code,
            )

    # -- login and logout ---------------------------------------------------------------
    def _safe_next(self, request: Request, target: str | None) -> str:
        """Where to go after the login: a path under this UI, never another site."""
        home = str(self.url_for(request, "home").path)
        root = home.rstrip("/")
        if not target:
            return home
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not target.startswith(root + "/") or "\\" in target:
            return home
        return target

    def _install_login_routes(self) -> None:
        app, login = self.app, self.login
        assert login is not None

        def login_form(
            request: Request,
            *,
            error: str = "",
            status_code: int = 200,
            next_: str = "",
            bye: bool = False,
        ) -> HTMLResponse:
            import secrets

            token = secrets.token_urlsafe(32)
            response = self.render(
                request,
                "login.html",
                {"error": error, "login_token": token, "next": next_, "bye": bye},
                status_code=status_code,
            )
            response.set_cookie(
                self.login_cookie,
                token,
                max_age=3600,
                path=UI_PREFIX,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response

        @app.get("/login", name="login_page", response_class=HTMLResponse)
        def login_page(request: Request, next: str = "", bye: str = "") -> Response:
            if login.sessions.get(request.cookies.get(self.session_cookie)) is not None:
                return RedirectResponse(self._safe_next(request, next), status_code=303)
            return login_form(request, next_=next, bye=bool(bye))

        @app.post("/login", name="login")
        async def do_login(request: Request) -> Response:
            form = await request.form()
            next_ = str(form.get("next") or "")
            client = request.client.host if request.client else "unknown"
            if not same_token(
                str(form.get("login_token") or ""), request.cookies.get(self.login_cookie) or ""
            ):
                return login_form(
                    request,
                    error="The login form expired. Please enter the password again.",
                    status_code=400,
                    next_=next_,
                )
            wait = login.limiter.wait_s(client)
            if wait > 0:
                return login_form(
                    request,
                    error=f"Too many wrong passwords. Try again in {wait:.0f} seconds.",
                    status_code=429,
                    next_=next_,
                )
            password = str(form.get("password") or "")
            if not await run_in_threadpool(login.password.matches, password):
                lockout = login.limiter.failed(client)
                log.warning("web UI: wrong password from %s", client)
                message = "Wrong password."
                if lockout:
                    message += f" Too many wrong passwords: wait {lockout:.0f} seconds."
                return login_form(request, error=message, status_code=401, next_=next_)
            login.limiter.succeeded(client)
            token, session = login.sessions.create()
            log.info("web UI: logged in from %s", client)
            response = RedirectResponse(self._safe_next(request, next_), status_code=303)
            response.set_cookie(
                self.session_cookie,
                token,
                path=UI_PREFIX,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            response.delete_cookie(self.login_cookie, path=UI_PREFIX)
            self.flash(session, "ok", "Logged in.")
            return response

        @app.post("/logout", name="logout")
        async def do_logout(request: Request) -> Response:
            token = request.cookies.get(self.session_cookie)
            session = login.sessions.get(token)
            if session is not None:
                await self.form(request, session)
                login.sessions.end(token)
            login_url = self.url_for(request, "login_page")
            response = RedirectResponse(f"{login_url}?bye=1", status_code=303)
            response.delete_cookie(self.session_cookie, path=UI_PREFIX)
            return response


def page_ui(request: Request) -> WebUI:
    """The :class:`WebUI` serving the request (a page's dependency)."""
    return cast(WebUI, request.app.state.ui)


UIDep = Annotated[WebUI, Depends(page_ui)]


def page_session(request: Request, ui: UIDep) -> Session | None:
    """The request's live session (``None`` on public pages); a login page otherwise."""
    return ui.session(request)


SessionDep = Annotated[Session | None, Depends(page_session)]


async def posted_form(request: Request, ui: UIDep, session: SessionDep) -> FormData:
    """The posted form once its CSRF token is the session's (a page's dependency: put it
    before any that looks something up, so a forged form learns nothing)."""
    return await ui.form(request, session)


FormDep = Annotated[FormData, Depends(posted_form)]


def page_node(request: Request) -> Any:
    """The node whose pages these are (given to :meth:`WebUI.serve`)."""
    return request.app.state.node


def mount(app: FastAPI, ui: WebUI) -> None:
    """Serve ``ui`` at ``/ui`` of ``app``, and send ``/`` there (outside the API's auth)."""
    app.mount(UI_PREFIX, ui.app, name=MOUNT_NAME)

    async def _home(_request: Request) -> Response:
        return RedirectResponse(f"{UI_PREFIX}/", status_code=303)

    app.add_route("/", _home, methods=["GET"], include_in_schema=False)
