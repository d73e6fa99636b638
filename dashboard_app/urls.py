from django.urls import path

from dashboard_app import views

urlpatterns = [
    path("analytics/", views.analytics, name="analytics"),
    path("analytics/source/<str:name>/", views.source, name="source"),
    path("analytics/run/<str:run_id>/", views.run, name="run"),
]
