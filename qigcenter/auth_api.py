"""Session login for the web app and token issue for API clients."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.core.cache import cache
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from qigcenter.schema import error


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True, allow_blank=True)  # "" when none was given
    is_staff = serializers.BooleanField(read_only=True)


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class LoginThrottle(BaseThrottle):
    """Wrong passwords are counted per client address and per account name, in the cache (shared
    by every process in services mode); past `LOGIN_FAILURES_PER_MIN` in the last minute on
    either, sign-in and token requests answer 429 with Retry-After, the right password too.
    Successful sign-ins are not counted: a browser that signs in often is never held back."""

    WINDOW_S = 60.0

    def __init__(self) -> None:
        self.wait_s: float | None = None

    @staticmethod
    def keys(request: Request, username: Any) -> list[str]:
        keys = [f"login-failures:addr:{request.META.get('REMOTE_ADDR', '')}"]
        if isinstance(username, str) and username:
            digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
            keys.append(f"login-failures:user:{digest}")
        return keys

    @classmethod
    def recent(cls, key: str, now: float) -> list[float]:
        return [t for t in cache.get(key, []) if t > now - cls.WINDOW_S]

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        username = request.data.get("username") if isinstance(request.data, dict) else None
        now, limit = time.time(), settings.LOGIN_FAILURES_PER_MIN
        for key in self.keys(request, username):
            failures = self.recent(key, now)
            if len(failures) >= limit:
                self.wait_s = failures[-limit] + self.WINDOW_S - now
                return False
        return True

    def wait(self) -> float | None:
        return self.wait_s

    @classmethod
    def failed(cls, request: Request, username: Any) -> None:
        now = time.time()
        for key in cls.keys(request, username):
            cache.set(key, [*cls.recent(key, now), now], timeout=int(cls.WINDOW_S) + 1)


def _authenticated_user(request: Request) -> Any:
    credentials = CredentialsSerializer(data=request.data)
    credentials.is_valid(raise_exception=True)
    username = credentials.validated_data["username"]
    user = authenticate(
        request._request, username=username, password=credentials.validated_data["password"]
    )
    if user is None or not user.is_active:
        LoginThrottle.failed(request, username)
        raise serializers.ValidationError({"detail": "Invalid username or password."})
    return user


@method_decorator(ensure_csrf_cookie, name="dispatch")
class CsrfView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(responses=inline_serializer("Csrf", {"csrfToken": serializers.CharField()}))
    def get(self, request: Request) -> Response:
        return Response({"csrfToken": get_token(request._request)})


@method_decorator(csrf_protect, name="dispatch")
class LoginView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [LoginThrottle]

    @extend_schema(
        request=CredentialsSerializer,
        responses={200: UserSerializer, 403: error("no CSRF token (GET auth/csrf/ first)")},
    )
    def post(self, request: Request) -> Response:
        user = _authenticated_user(request)
        login(request._request, user)
        return Response(UserSerializer(user).data)


class LogoutView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=UserSerializer)
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)


class TokenView(APIView):
    """Exchange a username and password for the user's API token (created on first use)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [LoginThrottle]

    @extend_schema(
        request=CredentialsSerializer,
        responses=inline_serializer("TokenReply", {"token": serializers.CharField()}),
    )
    def post(self, request: Request) -> Response:
        user = _authenticated_user(request)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})
