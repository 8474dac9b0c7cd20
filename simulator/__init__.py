"""Tools that play the cloud services locally: the phone simulator (Twilio's webhooks, Media
Streams and REST API) and an OpenAI-protocol LLM server. Not part of the product: product code
never imports this package; the `slot` CLI imports it lazily."""
