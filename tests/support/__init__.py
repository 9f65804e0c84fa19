"""What several test folders share: tiny models, loopback servers, synthetic runs."""
