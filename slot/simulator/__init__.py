"""Phone simulator: plays Twilio's side of a call (webhooks, Media Streams, REST API) offline."""
