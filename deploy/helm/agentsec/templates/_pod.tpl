{{/*
What a service's Deployment and its config check Job share: the
environment (secrets as the AGENTSEC_* variables the services read), the
volumes and their mounts. (dict "root" $ "key" "identity" "check" bool)
*/}}

{{- define "agentsec.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .source.name }}
      key: {{ .source.key | quote }}
{{- end -}}

{{- define "agentsec.env" -}}
{{- $root := .root -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- $v := index $root.Values .key -}}
{{- /* The config files in the image listen on 127.0.0.1; every container
binds all interfaces on its own port. */}}
- name: AGENTSEC_SERVER__LISTEN
  value: {{ printf "0.0.0.0:%v" $c.port | quote }}
{{- with include "agentsec.databaseSource" . | fromYaml }}
{{ include "agentsec.secretEnv" (dict "name" "AGENTSEC_DATABASE__URL" "source" .) }}
{{- end }}
{{- if $c.redis }}
{{- with include "agentsec.secretSource" (dict "root" $root "ref" $root.Values.redis) | fromYaml }}
{{ include "agentsec.secretEnv" (dict "name" "AGENTSEC_REDIS__URL" "source" .) }}
{{- end }}
{{- end }}
{{- if eq .key "identity" }}
{{- with include "agentsec.pepperSource" $root | fromYaml }}
{{ include "agentsec.secretEnv" (dict "name" "AGENTSEC_CREDENTIALS__PEPPER" "source" .) }}
{{- end }}
{{- with include "agentsec.bootstrapAdminSource" $root | fromYaml }}
{{ include "agentsec.secretEnv" (dict "name" "AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET" "source" .) }}
{{- end }}
{{- range $client := list "exchange" "policy" }}
{{- if include "agentsec.serviceClientWired" (dict "root" $root "client" $client) }}
{{- $id := (index $root.Values.serviceClients $client).clientId }}
{{ include "agentsec.secretEnv" (dict "name" (printf "AGENTSEC_SERVICE_CLIENTS__%s__CLIENT_SECRET" (upper $id)) "source" (include "agentsec.serviceClientSource" (dict "root" $root "client" $client) | fromYaml)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (has .key (list "exchange" "policy")) (include "agentsec.serviceClientWired" (dict "root" $root "client" .key)) }}
{{ include "agentsec.secretEnv" (dict "name" "AGENTSEC_IDENTITY__CLIENT_SECRET" "source" (include "agentsec.serviceClientSource" (dict "root" $root "client" .key) | fromYaml)) }}
{{- end }}
{{- if $root.Values.telemetry.otlp.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $root.Values.telemetry.otlp.endpoint | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ $c.name }}
{{- with $root.Values.defaults.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "agentsec.volumes" -}}
{{- $root := .root -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- $v := index $root.Values .key -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: data
  emptyDir:
    sizeLimit: 1Gi
{{- if and $root.Values.tls.enabled (not .check) }}
- name: tls
  secret:
    secretName: {{ include "agentsec.tlsSecretName" . }}
    defaultMode: 0440
{{- if $root.Values.tls.ca.existingSecret }}
- name: tls-ca
  secret:
    secretName: {{ $root.Values.tls.ca.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $root.Values.tls.ca.key | quote }}
        path: {{ $root.Values.tls.ca.key | quote }}
{{- end }}
{{- end }}
{{- if and $c.signs $v.signingKey.existingSecret }}
- name: signing-key
  secret:
    secretName: {{ $v.signingKey.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.signingKey.key | quote }}
        path: {{ $v.signingKey.key | quote }}
{{- end }}
{{- end -}}

{{- define "agentsec.volumeMounts" -}}
{{- $root := .root -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- $v := index $root.Values .key -}}
- name: config
  mountPath: /etc/agentsec/{{ $c.name }}.toml
  subPath: {{ $c.name }}.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
# The working directory: SQLite files (when no database Secret is named)
# and identity-svc's generated pepper (when none is configured) live here.
- name: data
  mountPath: /var/lib/agentsec
{{- if and $root.Values.tls.enabled (not .check) }}
- name: tls
  mountPath: /etc/agentsec/tls
  readOnly: true
{{- if $root.Values.tls.ca.existingSecret }}
- name: tls-ca
  mountPath: /etc/agentsec/tls-ca
  readOnly: true
{{- end }}
{{- end }}
{{- if and $c.signs $v.signingKey.existingSecret }}
- name: signing-key
  mountPath: /etc/agentsec/signing
  readOnly: true
{{- end }}
{{- end -}}

{{/* A pod-level setting of a service, else the shared default. (dict "root" "key" "field") */}}
{{- define "agentsec.podSetting" -}}
{{- $v := index .root.Values .key -}}
{{- $own := index $v .field -}}
{{- if $own -}}
{{- toYaml $own -}}
{{- else -}}
{{- with index .root.Values.defaults .field -}}{{- toYaml . -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* One probe: (dict "root" $ "key" "identity" "probe" "readiness") */}}
{{- define "agentsec.probe" -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- $p := index (index .root.Values .key).probes .probe -}}
{{- if $p.handler }}
{{ toYaml $p.handler }}
{{- else if .root.Values.tls.enabled }}
tcpSocket:
  port: grpc
{{- else }}
grpc:
  port: {{ $c.port }}
  service: {{ ternary $c.grpcService "" (eq .probe "readiness") | quote }}
{{- end }}
periodSeconds: {{ $p.periodSeconds }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $p.failureThreshold }}
{{- end -}}

{{/*
The container that runs `<service> --migrate`: the migrations Job's, or a
pod's init container (`migrations.mode: initContainer`). Same image, config,
environment and mounts as the service. (dict "root" $ "key" "identity")
*/}}
{{- define "agentsec.migrateContainer" -}}
{{- $root := .root -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
name: migrate
image: {{ include "agentsec.image" $root | quote }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
command: ["/usr/local/bin/{{ $c.name }}"]
args: ["--config", "/etc/agentsec/{{ $c.name }}.toml", "--migrate"]
env:
  {{- include "agentsec.env" (dict "root" $root "key" .key "check" false) | trim | nindent 2 }}
{{- with $root.Values.migrations.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.defaults.containerSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  {{- include "agentsec.volumeMounts" (dict "root" $root "key" .key "check" false) | nindent 2 }}
{{- end -}}
