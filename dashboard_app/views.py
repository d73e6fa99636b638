from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from metrics_app.queries import dashboard_snapshot


@login_required
def analytics(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/analytics.html", {"summary": dashboard_snapshot()})
