"""The Flower rounds' routes, included under /api/v1/federation/ (qigcenter/urls.py)."""

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from federation.flower.api import FlowerRoundViewSet, KeysView

router = SimpleRouter()
router.register("rounds", FlowerRoundViewSet, basename="flower-round")

urlpatterns: list[URLPattern | URLResolver] = [
    path("flower/keys/", KeysView.as_view(), name="flower-keys"),
    *router.urls,
]
