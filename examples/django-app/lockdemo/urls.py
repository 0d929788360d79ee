"""The app's five views, each at its own path."""
from django.urls import path

from signups import views

urlpatterns = [
    path("read/", views.read),
    path("write/", views.write),
    path("read_write_transaction/", views.read_write_transaction),
    path("read_write_immediate/", views.read_write_immediate),
    path("write_read_transaction/", views.write_read_transaction),
]
