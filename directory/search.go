package directory

import (
	"bytes"
	"context"
	"errors"
	"slices"

	"github.com/go-ldap/ldap/v3"
)

// search streams the entries of req on c to fn.
//
// pageSize > 0: an RFC 2696 paged search driven by hand over the cookies,
// so at most one page of raw entries is in memory and fn sees each page as
// it arrives (go-ldap's SearchWithPaging would collect every page first).
// A page is received whole before fn runs, so fn may issue its own requests
// on c (AD range retrieval) between pages.
// pageSize 0: one plain request (base-scope reads), where a limit error is
// reported, never the partial answer.
//
// Search continuation references (AD returns them for the other naming
// contexts under a domain's base) are not part of the answer: skipped. A
// referral as the result (code 10) means the base is elsewhere: an error.
func (l *LDAP) search(ctx context.Context, c *conn, op string, req *ldap.SearchRequest, pageSize int, fn func(*entry) error) error {
	base := slices.Clip(req.Controls)
	var cookie []byte
	refs := 0
	defer func() {
		if refs > 0 {
			l.log.Debug("ldap search: continuation references skipped",
				"directory", l.s.name, "op", op, "base", req.BaseDN, "count", refs)
		}
	}()
	if pageSize > 0 {
		req.Controls = append(base, &ldap.ControlPaging{PagingSize: uint32(pageSize)})
	}
	if err := c.sendSearch(req); err != nil {
		return classify(ctx, op, c.url, err)
	}
	for {
		res, err := c.searchResult()
		if err != nil {
			return classify(ctx, op, c.url, err)
		}
		refs += res.References
		more := false
		if pageSize > 0 {
			pc, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
			if !ok {
				return &ReadError{Op: op, URL: c.url, Kind: KindMissingPage, Class: ErrIncompleteRead, Err: errMissingPage}
			}
			if len(pc.Cookie) > 0 {
				// A server handing back the cookie it was given, with
				// nothing in the page, would loop forever.
				if len(res.Entries) == 0 && bytes.Equal(pc.Cookie, cookie) {
					return &ReadError{Op: op, URL: c.url, Kind: KindStalledPage, Class: ErrIncompleteRead, Err: errStalled}
				}
				cookie = pc.Cookie
				// Ask for the next page before handing this one over: the
				// server builds it while the caller works through this one
				// (a 100k-user read spent a tenth of its time on neither
				// side working).
				req.Controls = append(base, &ldap.ControlPaging{PagingSize: uint32(pageSize), Cookie: cookie})
				if err := c.sendSearch(req); err != nil {
					return classify(ctx, op, c.url, err)
				}
				more = true
			}
		}
		for i, e := range res.Entries {
			if err := fn(e); err != nil {
				last := res.Controls
				if more {
					// The next page is on its way: take it off the
					// connection, and abandon the search from its cookie.
					next, nerr := c.searchResult()
					if nerr != nil {
						return err
					}
					last = next.Controls
				}
				var cb *callbackError
				if errors.As(err, &cb) {
					l.abandonPaging(c, req, base, last)
				}
				return err
			}
			res.Entries[i] = nil // let the page go as it is consumed
		}
		if !more {
			return nil
		}
	}
}

// abandonPaging tells the server to drop a paged search we stop early
// (RFC 2696 §3: same request, size 0, last cookie), so its state does not
// linger on a pooled connection. Best effort.
func (l *LDAP) abandonPaging(c *conn, req *ldap.SearchRequest, base []ldap.Control, last []ldap.Control) {
	pc, ok := ldap.FindControl(last, ldap.ControlTypePaging).(*ldap.ControlPaging)
	if !ok || len(pc.Cookie) == 0 {
		return
	}
	req.Controls = append(base, &ldap.ControlPaging{PagingSize: 0, Cookie: pc.Cookie})
	if _, err := c.Search(req); err != nil {
		l.log.Debug("ldap: abandoning paged search failed", "directory", l.s.name, "error", err.Error())
	}
}
