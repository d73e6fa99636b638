from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from metrics_app.api import views as api_views

urlpatterns = [
    path("", RedirectView.as_view(url="/analytics/", permanent=False)),
    # what browsers ask for where a page names no icon (the admin, the API's JSON)
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True)),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("metrics_app.api.urls")),
    path("metrics", api_views.prometheus_metrics, name="prometheus"),
    path("", include("dashboard_app.urls")),
]
