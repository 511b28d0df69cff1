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

#endif
