from __future__ import annotations

from django.urls import path

from blog import views

# The tutorial's URL names, so its {% url %} tags work unchanged.
urlpatterns = [
    path("", views.index, name="index"),
    path("test-session/", views.test_session, name="test_session"),
    path("test-delete/", views.test_delete, name="test_delete"),
    path("save-session-data/", views.save_session_data, name="save_session_data"),
    path("access-session-data/", views.access_session_data, name="access_session_data"),
    path("delete-session-data/", views.delete_session_data, name="delete_session_data"),
    path("session-modified/", views.session_modified, name="session_modified"),
    path("session-expiry/", views.session_expiry, name="session_expiry"),
    path("lousy-login/", views.lousy_login, name="lousy_login"),
    path("lousy-secret/", views.lousy_secret, name="lousy_secret"),
    path("lousy-logout/", views.lousy_logout, name="lousy_logout"),
]
