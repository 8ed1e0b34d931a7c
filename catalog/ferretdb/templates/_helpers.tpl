{{- define "ferretdb.labels" -}}
app.kubernetes.io/name: ferretdb
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "ferretdb.host" -}}
{{ printf "%s-ferretdb.%s.svc.cluster.local" .Release.Name .Release.Namespace }}
{{- end -}}
{{- /* A password made once and kept across upgrades: from the Secret the hub holds. */ -}}
{{- define "ferretdb.password" -}}
{{- $old := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $old $old.data (index $old.data .key) -}}
{{- index $old.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 24 -}}
{{- end -}}
{{- end -}}
