/* status_page.h: the HTML status page both daemons serve at / (opserver.h). One self-contained
 * document (inline style and script, no external asset, works offline): it reads /status every
 * 2 s and counts down each SVID's and authority's remaining lifetime every second. It builds the
 * DOM with textContent only, so nothing from /status is ever parsed as HTML. */
#ifndef LANYARD_STATUS_PAGE_H
#define LANYARD_STATUS_PAGE_H

extern const char status_page_html[];

#endif
