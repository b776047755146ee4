from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from constellation import blobs_api, chat, ollama_api, openai_api
from constellation.api import InteractionViewSet, KernelViewSet
from federation import bundle_api
from federation.api import AnchorHistoryView, FederationView, JoinView, NodeViewSet
from learning.api import FineTuneJobViewSet, LearningEventViewSet
from learning.loop_api import LearningCycleViewSet, LoopView, RunNowView
from learning.signals_api import LearningSignalViewSet
from qigcenter import auth_api, views
from uploads.api import KnowledgeFileViewSet

# No `.json` twins of every route: the API speaks JSON only, and the twins of detail actions
# answered 500 (the actions take no `format` argument).
router = DefaultRouter()
router.include_format_suffixes = False
router.register("kernels", KernelViewSet)
router.register("interactions", InteractionViewSet, basename="interaction")
router.register("conversations", chat.ConversationViewSet, basename="conversation")
router.register("nodes", NodeViewSet)
router.register("uploads", KnowledgeFileViewSet)
router.register("jobs", FineTuneJobViewSet)
router.register("learning-events", LearningEventViewSet)
router.register("signals", LearningSignalViewSet, basename="signal")
router.register("learning/cycles", LearningCycleViewSet, basename="learning-cycle")

api_v1: list[URLPattern | URLResolver] = [
    path("auth/csrf/", auth_api.CsrfView.as_view(), name="auth-csrf"),
    path("auth/login/", auth_api.LoginView.as_view(), name="auth-login"),
    path("auth/logout/", auth_api.LogoutView.as_view(), name="auth-logout"),
    path("auth/me/", auth_api.MeView.as_view(), name="auth-me"),
    path("auth/token/", auth_api.TokenView.as_view(), name="auth-token"),
    path("chat/", chat.chat, name="chat"),
    path("federation/", FederationView.as_view(), name="federation"),
    path("federation/", include("federation.flower.urls")),  # rounds, SuperNode keys
    path("federation/join/", JoinView.as_view(), name="federation-join"),
    path(
        "federation/anchors/<int:kernel>/", AnchorHistoryView.as_view(), name="federation-anchors"
    ),
    path("federation/bundles/", bundle_api.BundlesView.as_view(), name="federation-bundles"),
    path(
        "federation/bundles/<int:version>/manifest/",
        bundle_api.BundleManifestView.as_view(),
        name="federation-bundle-manifest",
    ),
    path(
        "federation/bundles/<int:version>/files/<path:name>",
        bundle_api.BundleFileView.as_view(),
        name="federation-bundle-file",
    ),
    path(
        "federation/bundle/rollback/",
        bundle_api.BundleRollbackView.as_view(),
        name="federation-bundle-rollback",
    ),
    path("learning/loop/", LoopView.as_view(), name="learning-loop"),
    path("learning/loop/run/", RunNowView.as_view(), name="learning-loop-run"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger"),
    path("", include(router.urls)),
]

ollama_urls: list[URLPattern | URLResolver] = [
    path("api/version", ollama_api.version, name="ollama-version"),
    path("api/tags", ollama_api.tags, name="ollama-tags"),
    path("api/ps", ollama_api.ps, name="ollama-ps"),
    path("api/show", ollama_api.show, name="ollama-show"),
    path("api/generate", ollama_api.generate, name="ollama-generate"),
    path("api/chat", ollama_api.chat, name="ollama-chat"),
    path("api/embed", ollama_api.embed, name="ollama-embed"),
    path("api/embeddings", ollama_api.embeddings, name="ollama-embeddings"),
    path("api/create", ollama_api.create, name="ollama-create"),
    path("api/blobs/<str:digest>", blobs_api.blob, name="ollama-blob"),
    path("api/copy", ollama_api.copy, name="ollama-copy"),
    path("api/delete", ollama_api.delete, name="ollama-delete"),
    path("api/pull", ollama_api.pull, name="ollama-pull"),
    path("api/push", ollama_api.push, name="ollama-push"),
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat"),
    path("v1/completions", openai_api.completions, name="openai-completions"),
    path("v1/models", openai_api.models, name="openai-models"),
    path("v1/models/<path:model_id>", openai_api.model, name="openai-model"),
    path("v1/embeddings", openai_api.embeddings, name="openai-embeddings"),
]

# A URL nothing answers: JSON under /api/v1/ (the REST API's own shape), a page elsewhere.
handler404 = "qigcenter.views.not_found"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    *ollama_urls,
    # `/` is the React app, except on the Ollama listener (and under `qig serve`).
    path("", views.home, name="home"),
    # Everything else is a client-side route of the React app (its assets are served by
    # WhiteNoise from frontend/dist before a request reaches this).
    re_path(r"^(?!api/|v1/|admin/|static/|ws/)(?P<path>.*)$", views.spa, name="spa"),
]
