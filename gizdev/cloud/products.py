"""Compiled product codecs for the cloud, by product key, built once from the stored schema."""

from __future__ import annotations

from gizdev.cloud.storage import Storage
from gizdev.codec.p0 import Product as ProductCodec

__all__ = ["ProductCache"]


class ProductCache:
    """``product_key`` → compiled codec (None for a product stored without data points).

    Products are only ever added (``gizdev cloud product add``, possibly by another process while the server
    runs), never changed, so an entry is valid forever; a miss asks the database.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._codecs: dict[str, ProductCodec | None] = {}

    async def get(self, product_key: str) -> ProductCodec | None:
        """The codec of ``product_key``; NotFound (a StorageError) if there is no such product."""
        if product_key in self._codecs:
            return self._codecs[product_key]
        product = await self._storage.get_product(product_key)
        codec = ProductCodec(product.schema) if product.schema is not None else None
        self._codecs[product_key] = codec
        return codec
