"""Traffic protection: the front door (where the client address comes from, and the proof
that a request came through it), who counts as an established user, and shadow modes."""

from __future__ import annotations

from firebase_functions import params

FRONT_DOORS = ("google", "load-balancer", "cloudflare", "direct")
"""The front-door modes (see :mod:`shared.ratelimit.client` and the README)."""

FRONT_DOOR = params.StringParam(
    "PACK391_FRONT_DOOR",
    default="google",
    label="Front door",
    description=(
        "What sits in front of the functions, which decides where the client address comes "
        "from: google (a plain firebase deploy: Google's front end appends the client to "
        "X-Forwarded-For), load-balancer (an external Application Load Balancer), cloudflare "
        "(Cloudflare in front; its headers believed only from its published ranges), direct "
        "(the TCP peer is the client: the local stack)."
    ),
)

TRUSTED_HOPS = params.IntParam(
    "PACK391_TRUSTED_HOPS",
    default=-1,
    label="Trusted X-Forwarded-For hops",
    description=(
        "Entries at the right of X-Forwarded-For added by your own trusted proxies, skipped "
        "before the client's (Envoy's xff_num_trusted_hops). -1: the mode's own (google 0, "
        "load-balancer 1 for the forwarding rule's address, cloudflare 0)."
    ),
)

COUNTRY_HEADER = params.StringParam(
    "PACK391_COUNTRY_HEADER",
    default="X-Client-Region",
    label="Country header (load balancer)",
    description=(
        "load-balancer mode: the custom request header the load balancer sets to "
        "{client_region}; its right-most value is believed."
    ),
)

CLOUDFLARE_RANGES = params.ListParam(
    "PACK391_CLOUDFLARE_RANGES",
    default=[
        "173.245.48.0/20",
        "103.21.244.0/22",
        "103.22.200.0/22",
        "103.31.4.0/22",
        "141.101.64.0/18",
        "108.162.192.0/18",
        "190.93.240.0/20",
        "188.114.96.0/20",
        "197.234.240.0/22",
        "198.41.128.0/17",
        "162.158.0.0/15",
        "104.16.0.0/13",
        "104.24.0.0/14",
        "172.64.0.0/13",
        "131.0.72.0/22",
        "2400:cb00::/32",
        "2606:4700::/32",
        "2803:f800::/32",
        "2405:b500::/32",
        "2405:8100::/32",
        "2a06:98c0::/29",
        "2c0f:f248::/32",
    ],
    label="Cloudflare ranges",
    description=(
        "cloudflare mode: Cloudflare's published egress ranges (ips-v4 and ips-v6); "
        "CF-Connecting-IP and CF-IPCountry are believed only from these."
    ),
)

LB_ADDRESSES = params.ListParam(
    "PACK391_LB_ADDRESSES",
    default=[],
    label="Load balancer: forwarding rule addresses",
    description=(
        "load-balancer mode: the external address(es) of the forwarding rule (the right-most "
        "X-Forwarded-For entry the load balancer writes). A request without one of them on "
        "the right did not come through the load balancer and is keyed by its real address. "
        "Required on a deployed function in that mode."
    ),
)

IPV6_PREFIX = params.IntParam(
    "PACK391_IPV6_PREFIX",
    default=64,
    label="IPv6 prefix of one client",
    description=(
        "IPv6 clients are counted, limited and blocked by this many leading bits (64: one "
        "subscriber's or one server's network, as Cloudflare counts them); 32..128."
    ),
)

ESTABLISHED_MIN_AGE_MIN = params.IntParam(
    "PACK391_ESTABLISHED_MIN_AGE_MIN",
    default=60,
    label="Established user: minutes since sign-in",
    description=(
        "A signed-in user counts as established (shields a shared address, sizes its quota, "
        "may take panic passes and soft-launch places) once this many minutes have passed "
        "since its sign-in (the ID token's auth_time); anonymous, staff and service "
        "accounts never do."
    ),
)

DDOS_SHADOW_ACTIONS = params.ListParam(
    "PACK391_DDOS_SHADOW_ACTIONS",
    default=[],
    label="DDoS actions in shadow mode",
    description=(
        "Automatic mitigation actions that only record what they would do (in the detection "
        "and its alert) without enforcing it, as Cloud Armor's preview mode does: any of "
        "ddos_mode, block_address, block_user, refuse_anonymous."
    ),
)

RATE_LIMIT_SHADOW_CLASSES = params.ListParam(
    "PACK391_RATE_LIMIT_SHADOW_CLASSES",
    default=[],
    label="Shadow-mode classes",
    description="Endpoint classes whose limits count and report but never deny (for tuning).",
)

CLOUDFLARE_ORIGIN_HEADER = params.StringParam(
    "PACK391_CLOUDFLARE_ORIGIN_HEADER",
    default="X-Pack391-Origin-Secret",
    label="Cloudflare origin secret header",
    description=(
        "cloudflare mode: the request header your zone's Transform Rule sets to "
        "PACK391_CLOUDFLARE_ORIGIN_SECRET; Cloudflare's headers are believed only when it "
        "carries the secret."
    ),
)

CLOUDFLARE_ORIGIN_SECRET = params.SecretParam(
    "PACK391_CLOUDFLARE_ORIGIN_SECRET",
    label="Cloudflare origin secret",
    description=(
        "cloudflare mode: the value your zone's Transform Rule sets in "
        "PACK391_CLOUDFLARE_ORIGIN_HEADER, proof that a request came through your own zone "
        "(16+ characters: openssl rand -hex 32). Required deployed in cloudflare mode; bound "
        "only to the callables of a cloudflare-mode deploy. Other modes: any value."
    ),
)

ORIGIN_SECRET_MIN_CHARS = 16
"""Shortest origin secret accepted: a shorter one is guessable by the clients it must keep
out (``openssl rand -hex 32`` gives 64)."""
