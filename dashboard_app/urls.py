from django.urls import path

from dashboard_app import views

urlpatterns = [
    path("analytics/", views.analytics, name="analytics"),
]
