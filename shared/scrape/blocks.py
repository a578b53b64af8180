"""Bot protection told apart from a page: an answer that is a challenge or a block page from a
bot-protection service is that check's error, `blocked by bot protection (<service>: <sign>)`,
counted in the failure streak like any error, never stored and never a change.

Signs, from the services' public documentation and the pages they serve:
- Cloudflare: the `cf-mitigated: challenge` header on a challenge; its interstitial page ("Just a
  moment...", `_cf_chl_opt`, `/cdn-cgi/challenge-platform/`) on a 403 or 503 from `server: cloudflare`.
- AWS WAF: `x-amzn-waf-action: challenge` or `captcha`.
- DataDome: the `x-datadome` header with a 403, or its captcha page (`captcha-delivery.com`).
- Imperva (Incapsula): "Incapsula incident ID" / `_Incapsula_Resource` in a block page.
- Akamai: "Access Denied" with a "Reference #" from `server: AkamaiGHost`.
- Sucuri: the `x-sucuri-block` header, or "Sucuri WebSite Firewall - Access Denied".
- PerimeterX (HUMAN): its block page (`_pxCaptcha`, `px-captcha`) on a 403.

What helps is in the README: `render = "browser"` sometimes passes a JavaScript challenge (never a
captcha), a slower schedule, or asking the site for access.
"""

HEAD_BYTES = 16 * 1024  # how much of a body is looked at: block pages are small


def block(status: int, headers, body: bytes) -> str | None:
    """The service and sign when the answer is a bot-protection challenge or block, else None.
    `headers`: a case-insensitive mapping (urllib3's HTTPHeaderDict)."""
    get = (lambda name: str(headers.get(name, "") or "").lower())
    head = bytes(body[:HEAD_BYTES]).lower()
    server = get("server")
    if get("cf-mitigated") == "challenge":
        return "Cloudflare: challenge"
    action = get("x-amzn-waf-action")
    if action in ("challenge", "captcha"):
        return f"AWS WAF: {action}"
    if get("x-sucuri-block") or b"sucuri website firewall - access denied" in head:
        return "Sucuri: access denied"
    if status in (403, 429, 503):
        if "cloudflare" in server and (b"just a moment" in head or b"_cf_chl_opt" in head
                                       or b"/cdn-cgi/challenge-platform/" in head or b"attention required" in head):
            return "Cloudflare: challenge page"
        if get("x-datadome") or b"captcha-delivery.com" in head:
            return "DataDome: captcha"
        if b"incapsula incident id" in head or b"_incapsula_resource" in head:
            return "Imperva: block page"
        if "akamaighost" in server and b"access denied" in head and b"reference #" in head:
            return "Akamai: access denied"
        if b"_pxcaptcha" in head or b"px-captcha" in head:
            return "PerimeterX: captcha"
    return None
