from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from constellation import ollama_api
from constellation.api import KernelViewSet
from federation.api import NodeViewSet
from learning.api import FineTuneJobViewSet, LearningEventViewSet
from qigcenter import auth_api, views
from uploads.api import KnowledgeFileViewSet

router = DefaultRouter()
router.register("kernels", KernelViewSet)
router.register("nodes", NodeViewSet)
router.register("uploads", KnowledgeFileViewSet)
router.register("jobs", FineTuneJobViewSet)
router.register("learning-events", LearningEventViewSet)

api_v1: list[URLPattern | URLResolver] = [
    path("auth/csrf/", auth_api.CsrfView.as_view(), name="auth-csrf"),
    path("auth/login/", auth_api.LoginView.as_view(), name="auth-login"),
    path("auth/logout/", auth_api.LogoutView.as_view(), name="auth-logout"),
    path("auth/me/", auth_api.MeView.as_view(), name="auth-me"),
    path("auth/token/", auth_api.TokenView.as_view(), name="auth-token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/version", ollama_api.version, name="ollama-version"),  # type: ignore[arg-type]
    # Everything else is a client-side route of the React app (its assets are served by
    # WhiteNoise from frontend/dist before a request reaches this).
    re_path(r"^(?!api/|admin/|static/|ws/)(?P<path>.*)$", views.spa, name="spa"),
]
