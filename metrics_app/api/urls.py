from django.urls import path

from metrics_app.api import views

urlpatterns = [
    # POST /api/metrics/ is served in front of Django: metrics_app.api.ingest_route
    path("metrics/recent/", views.recent, name="metrics-recent"),
    path("metrics/summary/", views.summary, name="metrics-summary"),
    path("metrics/history/", views.history, name="metrics-history"),
    path("metrics/overview/", views.page_overview, name="metrics-overview"),
    path("metrics/failures/", views.failures, name="metrics-failures"),
    path("fields/", views.fields, name="fields"),
    path("entities/", views.entities, name="entities"),
    path("runs/", views.runs, name="runs"),
    path("runs/<str:run_id>/", views.run, name="run"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/silences/", views.silence, name="alert-silences"),
    path("stats/", views.stats, name="stats"),
    path("health/websocket", views.websocket_health, name="health-websocket"),
    path("schema/", views.schema, name="schema"),
]
