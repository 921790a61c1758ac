#!/bin/sh
# Validate the OpenAPI document with the standard validators that are
# installed: @seriousme/openapi-schema-validator (npm, `validate-api`) and
# openapi-spec-validator (Python). Exit 77 (skip) only when neither is.
#   npm install -g @seriousme/openapi-schema-validator@2.11.0
set -u
doc=${1:?usage: validate-openapi.sh openapi.json}
ran=0
fail=0
if command -v validate-api >/dev/null 2>&1; then
    ran=1
    out=$(validate-api "$doc" 2>&1)
    echo "validate-api: $out"
    case $out in
        *'"valid": true'*) ;;
        *) fail=1 ;;
    esac
fi
if command -v openapi-spec-validator >/dev/null 2>&1; then
    ran=1
    openapi-spec-validator "$doc" || fail=1
fi
if [ "$ran" = 0 ]; then
    echo "no OpenAPI validator installed (npm install -g @seriousme/openapi-schema-validator)"
    exit 77
fi
exit $fail
