/* The SVG plot of `compare --svg`: one panel per trace, reserved bytes of every policy as
 * lines over the trace's events, live bytes as a grey area underneath. Each series is the
 * replay engine's per-bucket peaks (at most REPLAY_MAX_POINTS points), so the file stays
 * small for any trace length and no peak is lost to the downsampling. Plain SVG 1.1, no
 * scripts, readable by browsers and converters alike.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define WIDTH 980.0
#define PANEL_H 300.0
#define LEFT 70.0
#define RIGHT 210.0
#define TOP 40.0
#define BOTTOM 44.0

static const char *policy_color(const char *name) {
    if (strcmp(name, "pytorch") == 0) return "#d62728";
    if (strcmp(name, "expandable") == 0) return "#ff7f0e";
    if (strcmp(name, "vmstitch") == 0) return "#1f77b4";
    if (strcmp(name, "gmlake") == 0) return "#2ca02c";
    return "#9467bd";
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* A tick step of 1, 2 or 5 x 10^k GiB giving at most 6 ticks. */
static double tick_step(double max_gib) {
    double step = pow(10.0, floor(log10(max_gib > 0 ? max_gib : 1.0)));
    static const double mult[] = {0.1, 0.2, 0.5, 1, 2, 5, 10};
    for (size_t i = 0; i < sizeof mult / sizeof mult[0]; i++)
        if (max_gib / (step * mult[i]) <= 6) return step * mult[i];
    return step * 10;
}

static void format_events(char *buf, size_t cap, double v) {
    if (v >= 1e6)
        snprintf(buf, cap, "%.3gM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%.3gk", v / 1e3);
    else
        snprintf(buf, cap, "%.0f", v);
}

static void panel(FILE *f, const replay_result *r, double y0) {
    const double pw = WIDTH - LEFT - RIGHT, ph = PANEL_H - TOP - BOTTOM;
    const double bottom = y0 + TOP + ph;
    uint64_t ymax_bytes = r->peak_live_bytes;
    for (int i = 0; i < r->npolicies; i++)
        if (r->policy[i].peak_reserved_bytes > ymax_bytes)
            ymax_bytes = r->policy[i].peak_reserved_bytes;
    double ymax = (double)ymax_bytes / GIB * 1.08;
    if (ymax <= 0) ymax = 1;
    double step = tick_step(ymax);

    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\">", LEFT, y0 + 22);
    xml_text(f, r->header.workload[0] ? r->header.workload : r->path);
    fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\">", LEFT + 4,
            y0 + 36);
    fprintf(f, "reserved memory per policy (lines) and live bytes (grey), %llu events",
            (unsigned long long)r->events);
    fputs("</text>\n", f);

    /* grid and axes */
    for (double t = 0; t <= ymax + 1e-9; t += step) {
        double y = bottom - t / ymax * ph;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n",
                LEFT, y, LEFT + pw, y);
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g GiB</text>\n",
                LEFT - 6, y + 4, t);
    }
    for (int k = 0; k <= 4; k++) {
        char lab[32];
        format_events(lab, sizeof lab, (double)r->events * k / 4.0);
        double x = LEFT + pw * k / 4.0;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
                x, bottom + 16, lab);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">events</text>\n",
            LEFT + pw / 2, bottom + 32);
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#999\"/>\n",
            LEFT, y0 + TOP, pw, ph);

    uint32_t n = r->points;
    if (n > 0) {
        /* live: a filled area */
        fprintf(f, "<path fill=\"#c8c8c8\" stroke=\"none\" d=\"M%.1f %.1f", LEFT, bottom);
        for (uint32_t k = 0; k < n; k++) {
            double x = LEFT + pw * (k + 1) / n;
            double y = bottom - (double)r->live_series[k] / GIB / ymax * ph;
            if (k == 0) fprintf(f, " L%.1f %.1f", LEFT, y);
            fprintf(f, " L%.1f %.1f", x, y);
        }
        fprintf(f, " L%.1f %.1f Z\"/>\n", LEFT + pw, bottom);
        /* reserved: one line per policy */
        for (int i = 0; i < r->npolicies; i++) {
            const replay_policy_result *p = &r->policy[i];
            fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.4\" d=\"",
                    policy_color(p->ops->name));
            for (uint32_t k = 0; k < n; k++) {
                double x = LEFT + pw * (k + 1) / n;
                double y = bottom - (double)p->reserved_series[k] / GIB / ymax * ph;
                if (k == 0) fprintf(f, "M%.1f %.1f", LEFT, y);
                fprintf(f, " L%.1f %.1f", x, y);
            }
            fputs("\"/>\n", f);
        }
    }

    /* legend */
    double lx = LEFT + pw + 16, ly = y0 + TOP + 8;
    for (int i = 0; i < r->npolicies; i++, ly += 20) {
        const replay_policy_result *p = &r->policy[i];
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"3\"/>\n",
                lx, ly, lx + 22, ly, policy_color(p->ops->name));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s %.2f GiB</text>\n", lx + 28,
                ly + 4, p->ops->name, (double)p->peak_reserved_bytes / GIB);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"22\" height=\"10\" fill=\"#c8c8c8\"/>\n", lx,
            ly - 5);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">live %.2f GiB</text>\n", lx + 28,
            ly + 4, (double)r->peak_live_bytes / GIB);
}

bool report_svg(const char *path, const replay_result *results, int nresults, char *err,
                size_t err_cap) {
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, err_cap, "%s: cannot write: %s", path, strerror(errno));
        return false;
    }
    double height = PANEL_H * (nresults > 0 ? nresults : 1);
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, height, WIDTH, height);
    for (int i = 0; i < nresults; i++)
        panel(f, &results[i], PANEL_H * i);
    fputs("</svg>\n", f);
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok) snprintf(err, err_cap, "%s: write failed", path);
    return ok;
}
