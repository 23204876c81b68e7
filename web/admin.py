"""Admin branding and layout: the site is cryptopred's, not Django's."""

from django.contrib import admin

from web.logins import LimitedAuthenticationForm

admin.site.site_header = "cryptopred admin"
admin.site.site_title = "cryptopred admin"
admin.site.index_title = "Markets, models and predictions"
# The app list stays on the admin's home page; without the side bar every list's columns fit a laptop screen.
admin.site.enable_nav_sidebar = False
admin.site.login_form = LimitedAuthenticationForm  # failed logins are limited per user name and address
