"""S3 storage for scans: private objects, pre-signed links that point where browsers can reach.

Inside a compose network the servers reach MinIO at http://minio:9000, a name no browser can
resolve. A pre-signed link's signature covers its host, so it cannot be rewritten afterwards: it is
signed for `public_endpoint_url` from the start. Signing is local computation; no request is made.
"""

from __future__ import annotations

from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class PrivateS3Storage(S3Storage):
    def get_default_settings(self) -> dict:
        return {**super().get_default_settings(), "public_endpoint_url": None}

    def url(self, name, parameters=None, expire=None, http_method=None) -> str:
        if not self.public_endpoint_url:
            return super().url(name, parameters, expire, http_method)
        params = {**(parameters or {}), "Bucket": self.bucket_name, "Key": self._normalize_name(clean_name(name))}
        return self._public_client().generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.querystring_expire if expire is None else expire,
            HttpMethod=http_method)

    def _public_client(self):
        # Kept beside the storage's own per-thread connection: boto3 clients are not shared across threads.
        client = getattr(self._connections, "public_client", None)
        if client is None:
            client = self._create_session().client(
                "s3", region_name=self.region_name, endpoint_url=self.public_endpoint_url,
                config=self.client_config, verify=self.verify)
            self._connections.public_client = client
        return client
