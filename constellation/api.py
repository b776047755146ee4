from __future__ import annotations

from rest_framework import serializers, viewsets

from constellation.models import Kernel


class KernelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Kernel
        fields = ["index", "role", "status", "anchor", "last_trained_at", "updated_at"]


class KernelViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Kernel.objects.all()
    serializer_class = KernelSerializer
    lookup_field = "index"

    def get_queryset(self):
        queryset = super().get_queryset()
        for field in ("role", "status"):
            value = self.request.query_params.get(field)
            if value:
                queryset = queryset.filter(**{field: value})
        return queryset
