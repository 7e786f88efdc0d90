{{/*
Each service's TOML file: what the chart wires (listen address, URLs,
issuers, audiences, TLS and key files), then the service's `config` values
merged over it. The schema keeps `config` to the keys the chart does not
wire. Secrets are not in the file: they come as AGENTSEC_* variables
(templates/_pod.tpl).
*/}}

{{/* Sections every service has: server, database, telemetry, tls. */}}
{{- define "agentsec.config.common" -}}
{{- $root := .root -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- $v := index $root.Values .key -}}
server:
  listen: {{ printf "0.0.0.0:%v" $c.port | quote }}
database:
{{- if include "agentsec.databaseSource" . }}
  # The URL comes from AGENTSEC_DATABASE__URL.
  schema: {{ $v.database.schema | quote }}
{{- else }}
  url: {{ printf "sqlite:///var/lib/agentsec/data/%s.db?mode=rwc" $c.name | quote }}
{{- end }}
  # migrations.mode: a Job or an init container migrates, the service checks.
  migrate_on_start: {{ include "agentsec.migrateOnStart" . }}
telemetry:
  log_format: {{ $root.Values.telemetry.logFormat | quote }}
  log_filter: {{ $root.Values.telemetry.logFilter | quote }}
{{- if $c.redis }}
redis:
  key_prefix: {{ $root.Values.redis.keyPrefix | quote }}
{{- end }}
{{- if $root.Values.tls.enabled }}
tls:
  cert_file: /etc/agentsec/tls/tls.crt
  key_file: /etc/agentsec/tls/tls.key
  client_auth: {{ $root.Values.tls.clientAuth | quote }}
  {{- if ne $root.Values.tls.clientAuth "none" }}
  client_ca_file: {{ include "agentsec.tlsCaFile" $root | quote }}
  {{- end }}
  reload_interval_secs: {{ $root.Values.tls.reloadIntervalSecs }}
  client:
    ca_file: {{ include "agentsec.tlsCaFile" $root | quote }}
    {{- if ne $root.Values.tls.clientAuth "none" }}
    cert_file: /etc/agentsec/tls/tls.crt
    key_file: /etc/agentsec/tls/tls.key
    {{- end }}
{{- end }}
{{- if and $c.signs $v.signingKey.existingSecret }}
signing:
  key_file: {{ printf "/etc/agentsec/signing/%s" $v.signingKey.key | quote }}
{{- end }}
{{- end -}}

{{/* The [audit] client of identity-svc, policy-svc and exchange-svc. */}}
{{- define "agentsec.config.auditClient" -}}
audit:
  {{- with include "agentsec.url" (dict "root" . "key" "audit") }}
  endpoint: {{ . | quote }}
  {{- end }}
  audience: {{ include "agentsec.auditAudience" . | quote }}
{{- end -}}

{{/* [admin]: identity-svc's keys and issuer, for the other three. */}}
{{- define "agentsec.config.admin" -}}
admin:
  {{- with include "agentsec.identityJwksUri" . }}
  jwks_uri: {{ . | quote }}
  issuer: {{ include "agentsec.identityIssuer" $ | quote }}
  {{- end }}
  audience: {{ include "agentsec.adminAudience" . | quote }}
{{- end -}}

{{- define "agentsec.config.identity" -}}
{{- $root := . -}}
{{- $ctx := dict "root" . "key" "identity" -}}
{{ include "agentsec.config.common" $ctx }}
issuer: {{ include "agentsec.identityIssuer" . | quote }}
tokens:
  admin_audience: {{ include "agentsec.adminAudience" . | quote }}
{{ include "agentsec.config.auditClient" . }}
{{- if include "agentsec.bootstrapAdminSource" . }}
bootstrap_admin:
  # The secret comes from AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET.
  client_id: {{ .Values.identity.bootstrapAdmin.clientId | quote }}
{{- end }}
{{- $exchange := include "agentsec.serviceClientWired" (dict "root" . "client" "exchange") -}}
{{- $policy := include "agentsec.serviceClientWired" (dict "root" . "client" "policy") -}}
{{- if or $exchange $policy }}
# Secrets come from AGENTSEC_SERVICE_CLIENTS__<CLIENT_ID>__CLIENT_SECRET.
service_clients:
  {{- if $exchange }}
  {{ .Values.serviceClients.exchange.clientId }}:
    audiences:
      - {{ include "agentsec.adminAudience" . | quote }}
      - {{ include "agentsec.policyAudience" . | quote }}
      - {{ include "agentsec.auditAudience" . | quote }}
    scopes: ["agentsec:agents:read", "agentsec:audit:append"]
  {{- end }}
  {{- if $policy }}
  {{ .Values.serviceClients.policy.clientId }}:
    audiences:
      - {{ include "agentsec.adminAudience" . | quote }}
      - {{ include "agentsec.auditAudience" . | quote }}
    scopes: ["agentsec:agents:read", "agentsec:revocations:read", "agentsec:audit:append"]
  {{- end }}
{{- end }}
{{- with .Values.identity.trustedIssuers }}
trusted_issuers:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{- define "agentsec.config.policy" -}}
{{- $ctx := dict "root" . "key" "policy" -}}
{{ include "agentsec.config.common" $ctx }}
{{ include "agentsec.config.admin" . }}
decisions:
  caller_audience: {{ include "agentsec.policyAudience" . | quote }}
{{ include "agentsec.config.auditClient" . }}
{{- $identityUrl := include "agentsec.url" (dict "root" . "key" "identity") }}
{{- if include "agentsec.serviceClientWired" (dict "root" . "client" "policy") }}
identity:
  # The secret comes from AGENTSEC_IDENTITY__CLIENT_SECRET.
  endpoint: {{ $identityUrl | quote }}
  client_id: {{ .Values.serviceClients.policy.clientId | quote }}
{{- with include "agentsec.url" (dict "root" . "key" "exchange") }}
revocations:
  exchange_endpoint: {{ . | quote }}
{{- end }}
{{- end }}
token_issuers:
{{- if $identityUrl }}
  - issuer: {{ include "agentsec.identityIssuer" . | quote }}
    jwks_uri: {{ include "agentsec.identityJwksUri" . | quote }}
    algorithms: ["EdDSA", "ES256"]
{{- end }}
{{- with include "agentsec.url" (dict "root" . "key" "exchange") }}
  - issuer: {{ include "agentsec.exchangeIssuer" $ | quote }}
    jwks_uri: {{ printf "%s/.well-known/jwks.json" . | quote }}
    algorithms: ["EdDSA", "ES256"]
{{- end }}
{{- with .Values.policy.extraTokenIssuers }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{- define "agentsec.config.exchange" -}}
{{- $ctx := dict "root" . "key" "exchange" -}}
{{- $issuer := include "agentsec.exchangeIssuer" . -}}
{{- $self := ((.Values.exchange.config | default dict).exchange | default dict).audience | default $issuer -}}
{{ include "agentsec.config.common" $ctx }}
issuer: {{ $issuer | quote }}
{{ include "agentsec.config.admin" . }}
{{ include "agentsec.config.auditClient" . }}
{{- if include "agentsec.serviceClientWired" (dict "root" . "client" "exchange") }}
identity:
  # The secret comes from AGENTSEC_IDENTITY__CLIENT_SECRET.
  endpoint: {{ include "agentsec.url" (dict "root" . "key" "identity") | quote }}
  client_id: {{ .Values.serviceClients.exchange.clientId | quote }}
{{- end }}
policy:
  {{- with include "agentsec.url" (dict "root" . "key" "policy") }}
  endpoint: {{ . | quote }}
  {{- end }}
  audience: {{ include "agentsec.policyAudience" . | quote }}
targets:
  # exchange-svc's own audience: delegated tokens handed on down a chain.
  - audience: {{ $self | quote }}
{{- range .Values.exchange.targets }}
{{- if ne .audience $self }}
  - {{ toYaml . | indent 4 | trim }}
{{- end }}
{{- end }}
{{- with .Values.exchange.userIssuers }}
user_issuers:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{- define "agentsec.config.audit" -}}
{{- $ctx := dict "root" . "key" "audit" -}}
{{ include "agentsec.config.common" $ctx }}
audience: {{ include "agentsec.auditAudience" . | quote }}
{{ include "agentsec.config.admin" . }}
{{- end -}}

{{/* The TOML text of a service: (dict "root" $ "key" "identity") */}}
{{- define "agentsec.configToml" -}}
{{- $c := include "agentsec.component" . | fromYaml -}}
{{- $v := index .root.Values .key -}}
{{- $wired := include (printf "agentsec.config.%s" .key) .root | fromYaml -}}
{{- if hasKey $wired "Error" -}}
{{- fail (printf "agentsec: the wired config of %s is not valid YAML: %s" $c.name $wired.Error) -}}
{{- end -}}
{{- $merged := mustMergeOverwrite $wired (deepCopy ($v.config | default dict)) -}}
# {{ $c.name }}: rendered by the AgentSec Helm chart from its values
# (deploy/config/{{ $c.name }}.toml lists every key). AGENTSEC_* variables
# override it; secrets come only from them.
{{- include "agentsec.toml.table" (dict "path" "" "map" $merged) }}
{{ end -}}
