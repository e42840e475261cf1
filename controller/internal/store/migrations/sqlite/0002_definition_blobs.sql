-- Module definitions travel apart from manifests, as blobs fetched by the
-- digest their releases sign: make a blob of every published definition.
INSERT OR IGNORE INTO blobs (digest, size, data, created)
	SELECT digest, length(definition), definition, published FROM modules;
