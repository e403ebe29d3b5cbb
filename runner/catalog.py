"""Is the Iceberg REST catalog refusing the runner? Asked after an import failed.

An importer that cannot load its catalog sees whatever Spark raises (a Py4J error
wrapping Iceberg's ``NotAuthorizedException``, an HTTP client's error); like
:mod:`runner.probes` for S3 and the metastore, the runner then asks the catalog itself.
A catalog that accepts no connection, or whose OAuth2 token endpoint refuses the
runner's client credentials, makes the attempt the infrastructure's (exit 69): the
credential is the operator's to fix, not the event's.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from runner.spark import TOKEN_PATH, SparkSettings


def refusal(settings: SparkSettings, timeout: float = 5.0) -> str | None:
    """Why the catalog of ``settings`` cannot be used with its credential; None when it
    issues a token (or the settings are not Iceberg's). The reason never contains the
    credential."""
    if not settings.is_iceberg or not settings.iceberg_catalog_url:
        return None
    url = settings.iceberg_catalog_url.rstrip("/") + TOKEN_PATH
    if not settings.iceberg_credential:
        return "no catalog credential (CSEP_ICEBERG_CREDENTIAL) is set"
    client_id, _, client_secret = settings.iceberg_credential.partition(":")
    form = {"grant_type": "client_credentials", "client_id": client_id,
            "client_secret": client_secret}
    if settings.iceberg_scope:
        form["scope"] = settings.iceberg_scope
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            json.load(response)["access_token"]
    except urllib.error.HTTPError as error:
        return f"{url} refused the runner's client credentials (HTTP {error.code})"
    except (urllib.error.URLError, OSError) as error:
        return f"{url} unreachable: {getattr(error, 'reason', error)}"
    except (ValueError, KeyError):
        return f"{url} answered without an access token"
    return None
