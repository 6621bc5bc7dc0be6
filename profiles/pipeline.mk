# The study's stages as file targets. Parameters come from profiles/$(PROFILE).mk.
reproduce: $(SETUP)
	@echo "reproduce: profile $(PROFILE), work folder $(WORK)"
