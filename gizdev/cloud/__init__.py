"""The local cloud: Open API and device API over HTTP, storage, broker integration, scheduler."""
