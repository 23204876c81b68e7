"""Admin branding: the site is cryptopred's, not Django's."""

from django.contrib import admin

admin.site.site_header = "cryptopred admin"
admin.site.site_title = "cryptopred admin"
admin.site.index_title = "Markets, models and predictions"
