{{- define "rabbitmq.labels" -}}
app.kubernetes.io/name: rabbitmq
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "rabbitmq.host" -}}
{{ printf "%s-rabbitmq.%s.svc.cluster.local" .Release.Name .Release.Namespace }}
{{- end -}}
{{- /* A secret made once and kept across upgrades: from the Secret the hub holds. */ -}}
{{- define "rabbitmq.secret" -}}
{{- $old := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $old $old.data (index $old.data .key) -}}
{{- index $old.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum .length -}}
{{- end -}}
{{- end -}}
