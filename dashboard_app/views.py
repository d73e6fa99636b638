from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def analytics(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/analytics.html", {"ws_path": "/ws/metrics/"})
