"""The chat of the React app: conversations kept per user, answers streamed as NDJSON.

`ConversationViewSet` (`/api/v1/conversations/`) lists, creates, renames and deletes a user's
own conversations. `chat` (`POST /api/v1/chat/`) answers one message in a conversation with the
trained constellation: the conversation's earlier turns and the new message become the prompt
(`prompts.chat_prompt`), `serving.answer` admits it, tokens are streamed as they are generated,
and the turn is stored as an `Interaction` with what routed and measured it (`Answer.turn`). A
client that goes away (the Stop button) frees its scheduler row at once; what was generated until
then is stored with `done_reason: "cancelled"`. See docs/inference.md, "Chat".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request as DrfRequest

from constellation import catalog, prompts, serving
from constellation.engine import e8
from constellation.errors import BadRequest, ContextTooLong, InferenceError, Unavailable
from constellation.interactions import Asked, Client
from constellation.keep_alive import parse_keep_alive
from constellation.models import Conversation, Interaction
from constellation.protocol import client_of, json_object
from constellation.published import bootstrap_progress, has_model

NDJSON = "application/x-ndjson"
DEFAULT_MODEL = "qig-constellation:latest"
MAX_CONTENT_CHARS = 32_000
TITLE_CHARS = 60
ENDPOINT = "app-chat"


# ---- what the API shows ----------------------------------------------------------------------
def conversation_summary(conversation: Conversation, message_count: int) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "message_count": message_count,
    }


def user_content(item: Interaction) -> str:
    """The user's message of a chat turn: the last of the messages sent to the model."""
    if item.messages:
        return str(item.messages[-1].get("content") or "")
    return item.prompt


def ttft_ms(item: Interaction) -> float | None:
    """Time to first token as the server measured it: loading (if any) plus the prompt."""
    if not item.completion_tokens:
        return None
    return (item.load_duration_ns + item.prompt_eval_duration_ns) / 1e6


def tokens_per_s(item: Interaction) -> float | None:
    """Generated tokens over the time spent generating them (Ollama's eval_count/eval_duration)."""
    if not item.completion_tokens or item.eval_duration_ns <= 0:
        return None
    return item.completion_tokens / (item.eval_duration_ns / 1e9)


def assistant_message(item: Interaction) -> dict[str, Any]:
    routed = list(item.routed or [])
    first = routed[0] if routed else {}
    role = first.get("role") or (e8.role_of(item.kernel).value if item.kernel is not None else "")
    return {
        "id": item.pk,
        "role": "assistant",
        "content": item.response,
        "created_at": item.created_at.isoformat(),
        "model": item.model,
        "kernel": item.kernel,
        "kernel_role": role,
        "distance": first.get("distance"),
        "routed": routed,
        "phi": item.phi,
        "kappa": item.kappa,
        "regime": item.regime,
        "ttft_ms": ttft_ms(item),
        "tokens_per_s": tokens_per_s(item),
        "completion_tokens": item.completion_tokens,
        "done_reason": item.done_reason,
        "feedback": item.feedback,
        "suggested_answer": item.suggested_answer,
    }


def user_message(item: Interaction) -> dict[str, Any]:
    # The user's message arrived when the answer began: the stored time minus its duration.
    sent = item.created_at - dt.timedelta(microseconds=item.total_duration_ns / 1000)
    return {"role": "user", "content": user_content(item), "created_at": sent.isoformat()}


def turns(conversation: Conversation) -> list[Interaction]:
    return list(conversation.interactions.order_by("created_at", "id"))


def thread(conversation: Conversation) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in turns(conversation):
        messages += [user_message(item), assistant_message(item)]
    return messages


# ---- /api/v1/conversations/ ------------------------------------------------------------------
class ConversationSerializer(serializers.ModelSerializer):
    message_count = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = ["id", "title", "created_at", "updated_at", "message_count"]
        read_only_fields = ["id", "created_at", "updated_at", "message_count"]
        extra_kwargs = {"title": {"required": False, "allow_blank": True, "max_length": 200}}

    def get_message_count(self, conversation: Conversation) -> int:
        turns = getattr(conversation, "n_turns", None)
        if turns is None:
            turns = conversation.interactions.count()
        return 2 * int(turns)


class ConversationDetailSerializer(ConversationSerializer):
    messages = serializers.SerializerMethodField()

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]
        read_only_fields = [*ConversationSerializer.Meta.read_only_fields, "messages"]

    def get_messages(self, conversation: Conversation) -> list[dict[str, Any]]:
        return thread(conversation)


class ConversationViewSet(viewsets.ModelViewSet):
    """The signed-in user's chat conversations (newest activity first); others' are 404."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Conversation]:
        queryset = Conversation.objects.annotate(n_turns=Count("interactions"))
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return queryset.none()
        user = cast(User, self.request.user)  # IsAuthenticated: never anonymous here
        return queryset.filter(user=user).order_by("-updated_at", "-id")

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return ConversationDetailSerializer
        return ConversationSerializer

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.save(user=self.request.user)


# ---- POST /api/v1/chat/ ----------------------------------------------------------------------
def detail(message: str, status: int) -> JsonResponse:
    response = JsonResponse({"detail": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = "Token"
    return response


def authenticate(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    """The REST API's own rules: a token, or a session with its CSRF token."""
    _ = request.body  # read (and kept) first: the CSRF check may look at the form data
    drf = DrfRequest(
        request,
        parsers=[JSONParser(), FormParser(), MultiPartParser()],
        authenticators=[TokenAuthentication(), SessionAuthentication()],
    )
    user: AbstractBaseUser | AnonymousUser = drf.user
    return user


def parse(request: HttpRequest) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest("expected a JSON body (Content-Type: application/json)")
    body = json_object(request.body, "invalid JSON in request body: {msg}")
    content = body.get("content")
    if not isinstance(content, str):
        raise BadRequest("content: required, a string (the message to answer)")
    if not content.strip():
        raise BadRequest("content: the message is empty")
    if len(content) > MAX_CONTENT_CHARS:
        raise BadRequest(f"content: longer than {MAX_CONTENT_CHARS} characters ({len(content)})")
    conversation = body.get("conversation")
    if conversation is not None and (
        isinstance(conversation, bool) or not isinstance(conversation, int)
    ):
        raise BadRequest("conversation: expected a conversation id (an integer) or null")
    model = body.get("model", DEFAULT_MODEL)
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model: expected a model name, e.g. qig-constellation:latest")
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("options: expected an object (Ollama options, e.g. num_predict)")
    return {"content": content, "conversation": conversation, "model": model, "options": options}


def history(conversation: Conversation | None) -> list[dict[str, str]]:
    if conversation is None:
        return []
    messages: list[dict[str, str]] = []
    for item in turns(conversation):
        messages += [
            {"role": "user", "content": user_content(item)},
            {"role": "assistant", "content": item.response},
        ]
    return messages


def own_conversation(user: Any, pk: int) -> Conversation | None:
    return Conversation.objects.filter(pk=pk, user=user).first()


def new_conversation(user: Any, content: str) -> Conversation:
    title = " ".join(content.split())
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    return Conversation.objects.create(user=user, title=title)


def summary(conversation: Conversation) -> dict[str, Any]:
    return conversation_summary(conversation, 2 * conversation.interactions.count())


async def start(
    spec: catalog.ModelSpec,
    past: list[dict[str, str]],
    content: str,
    options: Any,
    client: Client,
) -> serving.Answer:
    """Admit the turn; the oldest turns are left out while the prompt does not fit the context."""
    sampling = prompts.sampling_options(spec, options)
    keep_alive = parse_keep_alive(None)
    if not await asyncio.to_thread(has_model):  # the database in this request's thread
        raise Unavailable(f"no trained model yet: {await sync_to_async(bootstrap_progress)()}")
    while True:
        messages = [*past, {"role": "user", "content": content}]
        prompt = prompts.chat_prompt(spec, messages)
        asked = Asked(ENDPOINT, client, prompt, messages)
        try:
            return await serving.answer(spec, prompt, sampling, keep_alive, asked)
        except ContextTooLong:
            if not past:
                raise
            past = past[2:]


@csrf_exempt  # CSRF is checked for session authentication, as in the REST API
async def chat(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return detail(f'Method "{request.method}" not allowed.', 405)
    try:
        user = await sync_to_async(authenticate)(request)
    except exceptions.APIException as exc:
        return detail(str(exc.detail), exc.status_code)
    if not user.is_authenticated:
        return detail("Authentication credentials were not provided.", 401)
    try:
        body = parse(request)
        spec = await sync_to_async(catalog.resolve)(body["model"])
        conversation = None
        if body["conversation"] is not None:
            conversation = await sync_to_async(own_conversation)(user, body["conversation"])
            if conversation is None:
                return detail(f"conversation {body['conversation']} not found", 404)
        past = await sync_to_async(history)(conversation)
        client = client_of(request, user)
        answer = await start(spec, past, body["content"], body["options"], client)
    except InferenceError as exc:
        return detail(exc.message, exc.status)
    if conversation is None:
        conversation = await sync_to_async(new_conversation)(user, body["content"])
    return StreamingHttpResponse(
        turn_lines(answer, conversation),
        content_type=NDJSON,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data) + "\n").encode()


async def turn_lines(answer: serving.Answer, conversation: Conversation) -> AsyncIterator[bytes]:
    """The conversation, each token, then the stored turn (or the error, the turn kept)."""
    yield line({"type": "conversation", "conversation": await sync_to_async(summary)(conversation)})
    try:
        async with aclosing(answer.turn(conversation)) as pieces:
            async for piece in pieces:
                if not piece.done:
                    yield line({"type": "token", "content": piece.text})
                    continue
                assert answer.interaction is not None, "a turn is stored before its done piece"
                yield line({"type": "done", "message": assistant_message(answer.interaction)})
    except Exception as exc:  # the status is sent: the error goes in the stream
        message = exc.message if isinstance(exc, InferenceError) else f"internal error: {exc}"
        yield line({"type": "error", "error": message})
