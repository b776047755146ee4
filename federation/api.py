from __future__ import annotations

from rest_framework import serializers, viewsets

from federation.models import Node
from qigcenter.permissions import IsStaffOrReadOnly


class NodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Node
        fields = ["id", "name", "mode", "size", "endpoint", "enabled", "last_seen_at", "created_at"]
        read_only_fields = ["last_seen_at", "created_at"]


class NodeViewSet(viewsets.ModelViewSet):
    """Admins manage federation nodes; every signed-in user can see them."""

    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    permission_classes = [IsStaffOrReadOnly]

    def perform_create(self, serializer: NodeSerializer) -> None:  # type: ignore[override]
        serializer.save(created_by=self.request.user)
