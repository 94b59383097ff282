/*
 * report.html: the whole report in one self-contained page that any browser
 * opens from disk or as an e-mail attachment — inline CSS, the curves as
 * inline SVG, heatmaps as PNG data: URIs, no script and nothing fetched.
 *
 * The text and tables are report.md converted line by line (headings,
 * tables, lists, paragraphs, **bold** and `code`), so the two never
 * disagree. The gallery shows, per held-out image, the image, the dense
 * model's relevance and the pruned model's, each blended over the image in
 * gray with the bwr colormap of heatmap.h (each map scaled to its own 99.5th
 * percentile of |R|), a colour bar, and a caption with the true class and
 * both predictions. Where the dataset gives the stored image (an item's
 * native), the maps are resampled to its size and drawn over it; else over
 * the model's input. Images smaller than 224 pixels are enlarged (image and
 * map resized together) so a 28-pixel scan is not a thumbnail.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <iaprune/atomic.h>
#include <iaprune/heatmap.h>
#include <iaprune/image.h>
#include <iaprune/report.h>

#include "internal.h"

/* ---- text --------------------------------------------------------------------------- */

static void esc(FILE *f, const char *s, size_t n)
{
	for (size_t i = 0; i < n && s[i]; i++) {
		switch (s[i]) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(s[i], f);
		}
	}
}

/* Inline Markdown of one span: **bold** and `code`, the rest escaped. */
static void inline_md(FILE *f, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *close;

		if (s[i] == '*' && i + 1 < n && s[i + 1] == '*' &&
		    (close = strstr(s + i + 2, "**")) != NULL && (size_t)(close - s) < n) {
			fputs("<b>", f);
			esc(f, s + i + 2, (size_t)(close - s) - i - 2);
			fputs("</b>", f);
			i = (size_t)(close - s) + 2;
		} else if (s[i] == '`' && (close = memchr(s + i + 1, '`', n - i - 1)) != NULL) {
			fputs("<code>", f);
			esc(f, s + i + 1, (size_t)(close - s) - i - 1);
			fputs("</code>", f);
			i = (size_t)(close - s) + 1;
		} else {
			esc(f, s + i, 1);
			i++;
		}
	}
}

/* One Markdown table line "| a | b |" as a row of th (header) or td cells. */
static void table_row(FILE *f, const char *line, int header)
{
	const char *p = line + 1;

	fputs("<tr>", f);
	while (*p) {
		const char *end = strchr(p, '|');
		size_t n;

		if (!end)
			break;
		while (*p == ' ')
			p++;
		n = (size_t)(end - p);
		while (n && p[n - 1] == ' ')
			n--;
		fputs(header ? "<th>" : "<td>", f);
		inline_md(f, p, n);
		fputs(header ? "</th>" : "</td>", f);
		p = end + 1;
	}
	fputs("</tr>\n", f);
}

/* report.md as HTML: headings, tables, lists and paragraphs. */
static void markdown_to_html(FILE *f, char *md)
{
	int in_table = 0, in_list = 0, in_para = 0, header = 0;

	for (char *line = md, *next; line && *line; line = next) {
		int is_table, is_item, is_cont;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		is_table = line[0] == '|';
		is_item = !strncmp(line, "- ", 2);
		is_cont = !strncmp(line, "  ", 2);
		if (!line[0]) {
			/* A blank line ends whatever block is open. */
			if (in_table)
				fputs("</table>\n", f);
			if (in_list)
				fputs("</li></ul>\n", f);
			if (in_para)
				fputs("</p>\n", f);
			in_table = in_list = in_para = 0;
			continue;
		}

		if (in_table && !is_table) {
			fputs("</table>\n", f);
			in_table = 0;
		}
		if (in_list && !is_item && !is_cont) {
			fputs("</li></ul>\n", f);
			in_list = 0;
		}
		if (in_para && (is_table || is_item || line[0] == '#')) {
			fputs("</p>\n", f);
			in_para = 0;
		}
		if (!strncmp(line, "## ", 3)) {
			fputs("<h2>", f);
			inline_md(f, line + 3, strlen(line + 3));
			fputs("</h2>\n", f);
		} else if (!strncmp(line, "# ", 2)) {
			fputs("<h1>", f);
			inline_md(f, line + 2, strlen(line + 2));
			fputs("</h1>\n", f);
		} else if (is_table) {
			if (!in_table) {
				fputs("<table>\n", f);
				in_table = 1;
				header = 1;
			}
			if (!strncmp(line, "|---", 4) || !strncmp(line, "|:--", 4))
				continue;
			table_row(f, line, header);
			header = 0;
		} else if (is_item) {
			fputs(in_list ? "</li><li>" : "<ul><li>", f);
			in_list = 1;
			inline_md(f, line + 2, strlen(line + 2));
		} else if (in_list && is_cont) {
			fputc(' ', f);
			inline_md(f, line + 2, strlen(line + 2));
		} else {
			fputs(in_para ? " " : "<p>", f);
			in_para = 1;
			inline_md(f, line, strlen(line));
		}
	}
	if (in_table)
		fputs("</table>\n", f);
	if (in_list)
		fputs("</li></ul>\n", f);
	if (in_para)
		fputs("</p>\n", f);
}

/* ---- PNG in memory and base64 -------------------------------------------------------- */

static void be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* Append one chunk (length, type, data, CRC over type and data) at *out. */
static unsigned char *chunk(unsigned char *out, const char *type, const unsigned char *data, uint32_t n)
{
	uLong crc;

	be32(out, n);
	memcpy(out + 4, type, 4);
	if (n)
		memcpy(out + 8, data, n);
	crc = crc32(0L, out + 4, n + 4);
	be32(out + 8 + n, (uint32_t)crc);
	return out + 12 + n;
}

/*
 * An 8-bit RGB PNG of px[h][w][3] in a malloc'd buffer: one IDAT, filter 0
 * on every scanline (small images; the browser does not care).
 */
static int png_encode(const uint8_t *px, int h, int w, unsigned char **png, size_t *len, struct iap_error *err)
{
	size_t raw_n = (size_t)h * ((size_t)w * 3 + 1);
	unsigned char *raw = malloc(raw_n), *z = NULL, *out = NULL, *p, ihdr[13];
	uLongf zn = compressBound((uLong)raw_n);
	static const unsigned char sig[8] = { 137, 'P', 'N', 'G', 13, 10, 26, 10 };

	if (!raw)
		return iap_error_set(err, IAP_ENOMEM, "report.html: out of memory for a %dx%d image", w, h);
	for (int y = 0; y < h; y++) {
		raw[(size_t)y * ((size_t)w * 3 + 1)] = 0;
		memcpy(raw + (size_t)y * ((size_t)w * 3 + 1) + 1, px + (size_t)y * (size_t)w * 3, (size_t)w * 3);
	}
	z = malloc(zn);
	if (!z || compress2(z, &zn, raw, (uLong)raw_n, 6) != Z_OK) {
		free(raw);
		free(z);
		return iap_error_set(err, IAP_ENOMEM, "report.html: cannot compress a %dx%d image", w, h);
	}
	free(raw);
	out = malloc(8 + 25 + 12 + zn + 12);
	if (!out) {
		free(z);
		return iap_error_set(err, IAP_ENOMEM, "report.html: out of memory");
	}
	memcpy(out, sig, 8);
	be32(ihdr, (uint32_t)w);
	be32(ihdr + 4, (uint32_t)h);
	ihdr[8] = 8;     /* bit depth */
	ihdr[9] = 2;     /* RGB */
	ihdr[10] = ihdr[11] = ihdr[12] = 0;
	p = chunk(out + 8, "IHDR", ihdr, 13);
	p = chunk(p, "IDAT", z, (uint32_t)zn);
	p = chunk(p, "IEND", NULL, 0);
	free(z);
	*png = out;
	*len = (size_t)(p - out);
	return IAP_OK;
}

static void base64(FILE *f, const unsigned char *d, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);

		fputc(tab[v >> 18 & 63], f);
		fputc(tab[v >> 12 & 63], f);
		fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', f);
		fputc(i + 2 < n ? tab[v & 63] : '=', f);
	}
}

/* <img> with px as a PNG data: URI. */
static int img_tag(FILE *f, const uint8_t *px, int h, int w, const char *alt, struct iap_error *err)
{
	unsigned char *png = NULL;
	size_t len = 0;
	int rc = png_encode(px, h, w, &png, &len, err);

	if (rc)
		return rc;
	fprintf(f, "<img width=\"%d\" height=\"%d\" alt=\"", w, h);
	esc(f, alt, strlen(alt));
	fputs("\" src=\"data:image/png;base64,", f);
	base64(f, png, len);
	fputs("\">", f);
	free(png);
	return IAP_OK;
}

/* ---- heatmaps --------------------------------------------------------------------------- */

/*
 * The image stretched to its own range per channel (the normalisation is the
 * dataset's) in gray, with map (NULL: none) blended over it at weight
 * 0.75·|v|, v = map / its 99.5th percentile of |map| clipped to [−1, 1].
 */
static int render(const float *img, int c, int h, int w, const float *map, uint8_t *px, struct iap_error *err)
{
	int64_t plane = (int64_t)h * w;
	float lo[3] = { 0 }, span[3] = { 1, 1, 1 }, scale = 0;
	int rc;

	for (int ch = 0; ch < c && ch < 3; ch++) {
		float mn = INFINITY, mx = -INFINITY;

		for (int64_t k = 0; k < plane; k++) {
			mn = fminf(mn, img[ch * plane + k]);
			mx = fmaxf(mx, img[ch * plane + k]);
		}
		lo[ch] = mn;
		span[ch] = mx > mn ? mx - mn : 1;
	}
	if (map) {
		rc = iap_heatmap_scale(map, plane, 99.5f, &scale, err);
		if (rc)
			return rc;
	}
	for (int64_t k = 0; k < plane; k++) {
		double gray = 0, v = 0, a;
		uint8_t col[3];

		for (int ch = 0; ch < 3; ch++) {
			int src = c >= 3 ? ch : 0;
			double p = (img[src * plane + k] - lo[src]) / span[src];

			gray += (c >= 3 ? (ch == 0 ? 0.299 : ch == 1 ? 0.587 : 0.114) : 1.0 / 3.0) * p;
		}
		gray = gray < 0 ? 0 : gray > 1 ? 1 : gray;
		if (map && scale > 0)
			v = fmax(-1.0, fmin(1.0, map[k] / scale));
		iap_heatmap_color((float)v, col);
		a = 0.75 * fabs(v);
		for (int ch = 0; ch < 3; ch++) {
			double o = (1 - a) * gray + a * col[ch] / 255.0;

			px[k * 3 + ch] = (uint8_t)lround(255.0 * (o < 0 ? 0 : o > 1 ? 1 : o));
		}
	}
	return IAP_OK;
}

/* The size an item is drawn from: its stored image's when it has one, else the model's input. */
static void item_size(const struct iap_report_gallery *g, const struct iap_report_gallery_item *it, int *h, int *w)
{
	*h = it->native ? it->native_h : g->h;
	*w = it->native ? it->native_w : g->w;
}

/* The integer enlargement that brings a side under 224 pixels to about 224. */
static int enlargement(int h, int w)
{
	int big = h > w ? h : w;

	return big >= 224 ? 1 : (223 + big) / big;
}

/* Stored scans can be thousands of pixels: panels are drawn at most this long, so the page stays loadable. */
#define PANEL_MAX 1024

/* The size a panel of an h x w image is drawn at: enlarged under 224 pixels, shrunk past PANEL_MAX. */
static void display_size(int h, int w, int *oh, int *ow)
{
	int big = h > w ? h : w, s = enlargement(h, w);

	*oh = h * s;
	*ow = w * s;
	if (big > PANEL_MAX) {
		*oh = (int)((int64_t)h * PANEL_MAX / big);
		*ow = (int)((int64_t)w * PANEL_MAX / big);
		*oh = *oh < 1 ? 1 : *oh;
		*ow = *ow < 1 ? 1 : *ow;
	}
}

/*
 * One panel (image alone when map is NULL), enlarged to about 224 pixels
 * or shrunk to PANEL_MAX. With the item's stored image, the map (at the
 * model's input resolution) is first resampled to the stored size.
 */
static int panel(FILE *f, const struct iap_report_gallery *g, const struct iap_report_gallery_item *it,
		 const float *map, const char *alt, struct iap_error *err)
{
	const float *img = it->native ? it->native : it->image;
	int h, w, resized, oh, ow, rc = IAP_OK;
	float *bi = NULL, *bm = NULL, *nm = NULL;
	uint8_t *px;

	item_size(g, it, &h, &w);
	display_size(h, w, &oh, &ow);
	resized = oh != h || ow != w;
	px = malloc((size_t)oh * (size_t)ow * 3);
	if (!px)
		return iap_error_set(err, IAP_ENOMEM, "report.html: out of memory");
	if (it->native && map) {
		nm = malloc((size_t)h * (size_t)w * sizeof(float));
		rc = nm ? iap_image_resize(NULL, map, 1, g->h, g->w, nm, h, w, err)
			: iap_error_set(err, IAP_ENOMEM, "report.html: out of memory");
		map = nm;
	}
	if (!rc && resized) {
		bi = malloc((size_t)g->channels * (size_t)oh * (size_t)ow * sizeof(float));
		bm = map ? malloc((size_t)oh * (size_t)ow * sizeof(float)) : NULL;
		if (!bi || (map && !bm))
			rc = iap_error_set(err, IAP_ENOMEM, "report.html: out of memory");
		rc = rc ? rc : iap_image_resize(NULL, img, g->channels, h, w, bi, oh, ow, err);
		if (!rc && map)
			rc = iap_image_resize(NULL, map, 1, h, w, bm, oh, ow, err);
		img = bi;
		map = bm;
	}
	rc = rc ? rc : render(img, g->channels, oh, ow, map, px, err);
	rc = rc ? rc : img_tag(f, px, oh, ow, alt, err);
	free(bi);
	free(bm);
	free(nm);
	free(px);
	return rc;
}

static const char *class_of(const struct iap_report *r, int k, char *buf, size_t len)
{
	if (r->class_names && k >= 0 && k < r->n_classes && r->class_names[k])
		return r->class_names[k];
	snprintf(buf, len, "%d", k);
	return buf;
}

/* The colour bar: blue (−1) through white (0) to red (+1) of each map's own scale. */
static void colour_bar(FILE *f)
{
	fputs("<figure class=\"bar\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"44\">"
	      "<defs><linearGradient id=\"bwr\"><stop offset=\"0\" stop-color=\"#0000ff\"/>"
	      "<stop offset=\"0.5\" stop-color=\"#ffffff\"/><stop offset=\"1\" stop-color=\"#ff0000\"/>"
	      "</linearGradient></defs><rect x=\"10\" y=\"4\" width=\"300\" height=\"16\" fill=\"url(#bwr)\" "
	      "stroke=\"#333\"/><g font-size=\"11\" text-anchor=\"middle\"><text x=\"10\" y=\"36\">−1</text>"
	      "<text x=\"160\" y=\"36\">0</text><text x=\"310\" y=\"36\">+1</text></g></svg>"
	      "<figcaption>relevance ÷ the map's 99.5th percentile of |R|: red for the explained class (the "
	      "method's target), blue against it, clipped at ±1; the gray image shows through in proportion</figcaption>"
	      "</figure>\n", f);
}

static int gallery(FILE *f, const struct iap_report *r, struct iap_error *err)
{
	const struct iap_report_gallery *g = r->gallery;
	int rc = IAP_OK;

	fputs("<h2 id=\"heatmaps\">Heatmaps: dense against pruned</h2>\n<p>", f);
	esc(f, g->method, strlen(g->method));
	fputs(" relevance on held-out images of the evaluation split; pruned model: ", f);
	esc(f, g->pruned, strlen(g->pruned));
	{
		int n_native = 0, same = 1, h, w, s;

		for (int i = 0; i < g->n; i++) {
			n_native += g->items[i].native != NULL;
			same &= g->items[i].native_h == g->items[0].native_h && g->items[i].native_w == g->items[0].native_w;
		}
		item_size(g, &g->items[0], &h, &w);
		s = enlargement(h, w);
		if (n_native < g->n) {
			/* The dataset plugin has no load_original (ABI 2.1): the model's input is all there is. */
			fprintf(f, ". Images and maps at the model's input resolution (%d×%d)", g->w, g->h);
			if (s > 1)
				fprintf(f, ", shown enlarged %d× (bilinear)", s);
			else if (h > PANEL_MAX || w > PANEL_MAX)
				fprintf(f, ", shown shrunk to at most %d pixels a side", PANEL_MAX);
		} else {
			fputs(". Images at their stored resolution", f);
			if (same)
				fprintf(f, " (%d×%d)", w, h);
			fprintf(f, "; each map resampled (bilinear) to it from the model's input resolution (%d×%d)",
				g->w, g->h);
			if (same && s > 1)
				fprintf(f, "; shown enlarged %d× (bilinear)", s);
			else if (same && (h > PANEL_MAX || w > PANEL_MAX))
				fprintf(f, "; shown shrunk to at most %d pixels a side", PANEL_MAX);
			else if (!same)
				fprintf(f, "; images under 224 pixels shown enlarged, over %d shrunk to %d (the caption "
					   "gives each size)", PANEL_MAX, PANEL_MAX);
		}
	}
	fputs(".</p>\n", f);
	colour_bar(f);
	fputs("<div class=\"grid\">\n", f);
	for (int i = 0; !rc && i < g->n; i++) {
		const struct iap_report_gallery_item *it = &g->items[i];
		char a[64], b[64], c[64], alt[160];
		const char *label = class_of(r, it->label, a, sizeof(a));

		fprintf(f, "<figure class=\"item\"><div class=\"row\"><div class=\"cell\">");
		snprintf(alt, sizeof(alt), "image %lld", (long long)it->index);
		rc = panel(f, g, it, NULL, alt, err);
		fputs("<span>image</span></div><div class=\"cell\">", f);
		snprintf(alt, sizeof(alt), "dense relevance, image %lld", (long long)it->index);
		rc = rc ? rc : panel(f, g, it, it->dense_map, alt, err);
		fputs("<span>dense model</span></div><div class=\"cell\">", f);
		snprintf(alt, sizeof(alt), "pruned relevance, image %lld", (long long)it->index);
		rc = rc ? rc : panel(f, g, it, it->pruned_map, alt, err);
		fprintf(f, "<span>pruned model</span></div></div><figcaption>image %lld of the evaluation split",
			(long long)it->index);
		if (it->native)
			fprintf(f, " (stored %d×%d)", it->native_w, it->native_h);
		fputs(" · true class <b>", f);
		esc(f, label, strlen(label));
		fputs("</b> · dense predicts ", f);
		esc(f, class_of(r, it->dense_pred, b, sizeof(b)), 64);
		fprintf(f, " <span class=\"%s\">(%s)</span> · pruned predicts ", it->dense_pred == it->label ? "ok" : "bad",
			it->dense_pred == it->label ? "correct" : "wrong");
		esc(f, class_of(r, it->pruned_pred, c, sizeof(c)), 64);
		fprintf(f, " <span class=\"%s\">(%s)</span></figcaption></figure>\n",
			it->pruned_pred == it->label ? "ok" : "bad", it->pruned_pred == it->label ? "correct" : "wrong");
	}
	fputs("</div>\n", f);
	return rc;
}

/* ---- the page ----------------------------------------------------------------------------- */

int iap_report_write_html(const struct iap_report *r, const char *path, struct iap_error *err)
{
	struct iap_atomic_file af;
	char *md = NULL;
	size_t md_len = 0;
	FILE *mem = open_memstream(&md, &md_len);
	int rc;

	if (!mem)
		return iap_error_set(err, IAP_ENOMEM, "report.html: out of memory");
	rc = iap_report_md_stream(r, mem, err);
	fclose(mem);
	if (rc) {
		free(md);
		return rc;
	}
	rc = iap_atomic_open(&af, path, err);
	if (rc) {
		free(md);
		return rc;
	}
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>iaprune report: ", af.fp);
	esc(af.fp, r->title ? r->title : "pipeline", 4096);
	fputs("</title>\n<style>\n"
	      "body{font-family:sans-serif;margin:2em auto;max-width:1200px;color:#222;background:#fff}\n"
	      "table{border-collapse:collapse;margin:1em 0;font-size:13px}\n"
	      "th,td{border:1px solid #ccc;padding:3px 7px}th{background:#f0f0f0}\n"
	      "td:not(:first-child){text-align:right}tr:nth-child(even) td{background:#fafafa}\n"
	      "code{background:#f4f4f4;padding:0 3px}\n"
	      ".grid{display:flex;flex-wrap:wrap;gap:18px}.item{margin:0}.row{display:flex;gap:4px}\n"
	      ".cell{display:flex;flex-direction:column;align-items:center;font-size:12px;color:#555}\n"
	      "figcaption{font-size:13px;margin-top:4px}.ok{color:#1a7f37;font-weight:bold}"
	      ".bad{color:#c62828;font-weight:bold}\n.bar figcaption{max-width:520px}\n"
	      "</style></head><body>\n", af.fp);
	markdown_to_html(af.fp, md);
	free(md);
	fputs("<h2 id=\"curves\">Curves</h2>\n<div class=\"curves\">\n", af.fp);
	rc = iap_report_svg_stream(r, af.fp, err);
	fputs("</div>\n", af.fp);
	if (!rc && r->gallery && r->gallery->n > 0)
		rc = gallery(af.fp, r, err);
	fputs("</body></html>\n", af.fp);
	if (!rc && ferror(af.fp))
		rc = iap_error_set(err, IAP_EIO, "%s: write failed", path);
	if (rc) {
		iap_atomic_abort(&af);
		return rc;
	}
	return iap_atomic_commit(&af, err);
}
