-- Module definitions travel apart from manifests, as blobs fetched by the
-- digest their releases sign: make a blob of every published definition.
INSERT INTO blobs (digest, size, data, created)
	SELECT digest, octet_length(definition), definition, published FROM modules
	ON CONFLICT (digest) DO NOTHING;
