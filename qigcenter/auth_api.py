"""Session login for the web app and token issue for API clients."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
    is_staff = serializers.BooleanField(read_only=True)


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class LoginThrottle(ScopedRateThrottle):
    scope = "login"
    THROTTLE_RATES = {"login": "20/min"}


def _authenticated_user(request: Request) -> Any:
    credentials = CredentialsSerializer(data=request.data)
    credentials.is_valid(raise_exception=True)
    user = authenticate(
        request._request,
        username=credentials.validated_data["username"],
        password=credentials.validated_data["password"],
    )
    if user is None or not user.is_active:
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

    @extend_schema(request=CredentialsSerializer, responses=UserSerializer)
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
