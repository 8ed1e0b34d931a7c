{{- define "pytorch.labels" -}}
app.kubernetes.io/name: pytorch
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
