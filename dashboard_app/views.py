import math
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from metrics_app.records import is_run_id, is_source_name

WS_PATH = "/ws/metrics/"


@login_required
def analytics(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/analytics.html", {"ws_path": WS_PATH})


@login_required
def source(request: HttpRequest, name: str) -> HttpResponse:
    """One source's (or scheduler's) own page: its volume, errors, percentiles and failures."""
    if not is_source_name(name):
        raise Http404("not a source name")
    return render(request, "dashboard/source.html", {"ws_path": WS_PATH, "source": name})


@login_required
def run(request: HttpRequest, run_id: str) -> HttpResponse:
    """One run against its scheduler's last ten (static/js/run-page.js reads GET /api/runs/<runId>/)."""
    if not is_run_id(run_id):
        raise Http404("not a run id")
    return render(request, "dashboard/run.html", {"run_id": run_id})


def locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' answer to a login while locked out: what happened and for how long."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    context = {
        "username": (credentials or {}).get("username", ""),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": math.ceil(seconds / 60),
    }
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response
