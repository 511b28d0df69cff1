/*
 * ap_inbox.h - the web inbox (GET /): one page that lists pending
 * requirements with approve / reject (and the fields or result they need)
 * and the audit log. It holds no data itself: it calls the HTTP API with the
 * token the person types in.
 */
#ifndef AP_INBOX_H
#define AP_INBOX_H

/* The page, a NUL-terminated HTML document. */
extern const char ap_inbox_html[];

/* The page's Content-Security-Policy: its own inline script and style (by
 * their SHA-256) and calls to its own origin, nothing else. */
const char *ap_inbox_csp(void);

#endif
