{{/* Combinations the services would refuse or that would lose data, refused at render time. */}}
{{- define "agentsec.validate" -}}
{{- $root := . -}}
{{- range $key, $c := include "agentsec.components" . | fromYaml -}}
{{- $v := index $root.Values $key -}}
{{- if $v.enabled -}}
{{- $ctx := dict "root" $root "key" $key -}}
{{- if and (not (include "agentsec.databaseSource" $ctx)) (or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled) -}}
{{- fail (printf "agentsec: %s runs on a SQLite file in its pod (no database.existingSecret): it cannot have more than one replica. Name a PostgreSQL URL Secret (database.existingSecret)." $c.name) -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (lt (int $v.autoscaling.maxReplicas) (int $v.autoscaling.minReplicas)) -}}
{{- fail (printf "agentsec: %s.autoscaling.maxReplicas is below minReplicas" $key) -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (not $v.autoscaling.targetCPUUtilizationPercentage) (not $v.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail (printf "agentsec: %s.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.identity.enabled (include "agentsec.databaseSource" (dict "root" . "key" "identity")) (not (include "agentsec.pepperSource" .)) -}}
{{- fail "agentsec: identity-svc on PostgreSQL needs a shared credential pepper: set identity.credentials.existingSecret or secrets.generate=true (a pepper generated per pod would differ between replicas and change on every restart)." -}}
{{- end -}}
{{- if and (or .Values.policy.enabled .Values.exchange.enabled .Values.audit.enabled) (not (include "agentsec.url" (dict "root" . "key" "identity"))) -}}
{{- fail "agentsec: identity-svc is disabled: set identity.externalEndpoint (its base URL) and identity.issuer, which the other services verify tokens against." -}}
{{- end -}}
{{- if and (not .Values.identity.enabled) (not .Values.identity.issuer) -}}
{{- fail "agentsec: identity-svc is disabled: set identity.issuer to the issuer of its tokens." -}}
{{- end -}}
{{- if and (not .Values.exchange.enabled) .Values.exchange.externalEndpoint (not .Values.exchange.issuer) -}}
{{- fail "agentsec: exchange.externalEndpoint needs exchange.issuer (the iss of its tokens)." -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "agentsec: tls.certManager.enabled needs tls.certManager.issuerRef.name." -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) -}}
{{- fail "agentsec: tls.certManager.enabled needs tls.enabled." -}}
{{- end -}}
{{- end -}}
